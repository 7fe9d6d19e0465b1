"""The data model: 29 tables in 8 domains (see SCHEMA.md), and their enumerations."""

from pfd_db.models.api import (
    APIKey,
    APIMetricsSummary,
    APIRequestLog,
    APIUsage,
    RollupStalePeriod,
    RollupWatermark,
)
from pfd_db.models.auth import BackupCode, LoginHistory, SessionLog, User
from pfd_db.models.base import Base
from pfd_db.models.column_values import check_pending_values
from pfd_db.models.enums import (
    DatasetGenerationStatus,
    DatasetImportStatus,
    EmailStatus,
    EventType,
    ExperimentStatus,
    HPOMethod,
    JobStatus,
    Role,
    WebhookStatus,
    default_preferences,
)
from pfd_db.models.ml import Dataset, Experiment, Explanation, HPOCampaign, Signal, TrainingRun
from pfd_db.models.nas import NASCampaign, NASTrial
from pfd_db.models.notifications import (
    EmailDigestQueue,
    EmailLog,
    NotificationPreference,
    WebhookConfiguration,
    WebhookLog,
)
from pfd_db.models.pipeline import DatasetGeneration, DatasetImport
from pfd_db.models.search import ExperimentTag, SavedSearch, Tag
from pfd_db.models.system import SystemLog

__all__ = [
    "APIKey",
    "APIMetricsSummary",
    "APIRequestLog",
    "APIUsage",
    "BackupCode",
    "Base",
    "Dataset",
    "DatasetGeneration",
    "DatasetGenerationStatus",
    "DatasetImport",
    "DatasetImportStatus",
    "EmailDigestQueue",
    "EmailLog",
    "EmailStatus",
    "EventType",
    "Experiment",
    "ExperimentStatus",
    "ExperimentTag",
    "Explanation",
    "HPOCampaign",
    "HPOMethod",
    "JobStatus",
    "LoginHistory",
    "NASCampaign",
    "NASTrial",
    "NotificationPreference",
    "Role",
    "RollupStalePeriod",
    "RollupWatermark",
    "SavedSearch",
    "SessionLog",
    "Signal",
    "SystemLog",
    "Tag",
    "TrainingRun",
    "User",
    "WebhookConfiguration",
    "WebhookLog",
    "WebhookStatus",
    "check_pending_values",
    "default_preferences",
]
