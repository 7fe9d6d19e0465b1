"""Enumerations and constant sets of the schema, stored as lowercase strings."""

from __future__ import annotations

from enum import StrEnum


class ExperimentStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class HPOMethod(StrEnum):
    GRID_SEARCH = "grid_search"
    RANDOM_SEARCH = "random_search"
    BAYESIAN = "bayesian"
    HYPERBAND = "hyperband"


class JobStatus(StrEnum):
    """Status of a background data job (generation or import)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


DatasetGenerationStatus = JobStatus
DatasetImportStatus = JobStatus


class Role(StrEnum):
    """User roles, in increasing order of power (see :attr:`level`)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"

    @property
    def level(self) -> int:
        return list(Role).index(self)


class EventType(StrEnum):
    TRAINING_STARTED = "training.started"
    TRAINING_COMPLETE = "training.complete"
    TRAINING_FAILED = "training.failed"
    TRAINING_PAUSED = "training.paused"
    TRAINING_RESUMED = "training.resumed"
    HPO_CAMPAIGN_STARTED = "hpo.campaign_started"
    HPO_TRIAL_COMPLETE = "hpo.trial_complete"
    HPO_CAMPAIGN_COMPLETE = "hpo.campaign_complete"
    HPO_CAMPAIGN_FAILED = "hpo.campaign_failed"
    ACCURACY_MILESTONE = "accuracy.milestone"
    MODEL_DEPLOYED = "model.deployed"
    SYSTEM_MAINTENANCE = "system.maintenance"
    TEST_WEBHOOK = "test.webhook"


NOTIFIABLE_EVENTS: tuple[EventType, ...] = tuple(
    event for event in EventType if event is not EventType.TEST_WEBHOOK
)
"""The events users are notified of and set preferences for. ``test.webhook`` is
sent on demand to one webhook (its "send test" button), whatever it subscribes to."""


EMAIL_ON_BY_DEFAULT: frozenset[EventType] = frozenset(
    {
        EventType.TRAINING_COMPLETE,
        EventType.TRAINING_FAILED,
        EventType.HPO_CAMPAIGN_COMPLETE,
        EventType.HPO_CAMPAIGN_FAILED,
        EventType.SYSTEM_MAINTENANCE,
    }
)


class EmailFrequency(StrEnum):
    IMMEDIATE = "immediate"
    DIGEST_DAILY = "digest_daily"
    DIGEST_WEEKLY = "digest_weekly"


def default_preferences() -> dict[EventType, dict[str, object]]:
    """The notification preferences a new user starts with, by event type."""
    return {
        event: {
            "email_enabled": event in EMAIL_ON_BY_DEFAULT,
            "email_frequency": EmailFrequency.IMMEDIATE.value,
        }
        for event in NOTIFIABLE_EVENTS
    }


class EmailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    OPENED = "opened"
    CLICKED = "clicked"


class WebhookStatus(StrEnum):
    PENDING = "pending"  # queued or being delivered (see pfd_db.store.notify.deliveries)
    SENT = "sent"
    FAILED = "failed"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    INVALID_URL = "invalid_url"
    PROVIDER_ERROR = "provider_error"


class WebhookProvider(StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    WEBHOOK = "webhook"


class Aggregation(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"


class LoginMethod(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a method name, not a password
    TWO_FACTOR = "2fa"
    BACKUP_CODE = "backup_code"
    API_KEY = "api_key"
    OAUTH = "oauth"  # revision 0008: imported from the legacy dashboard
    OTHER = "other"  # revision 0008: the source's own name in login_method_detail


class LogStatus(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    WARNING = "warning"


class NASAlgorithm(StrEnum):
    RANDOM = "random"
    BAYESIAN = "bayesian"
    EVOLUTION = "evolution"
