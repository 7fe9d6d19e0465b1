"""The model metadata against the counts and rules of SCHEMA.md (no database needed)."""

from __future__ import annotations

import pytest
from sqlalchemy import ForeignKey, Index, UniqueConstraint, inspect
from sqlalchemy.orm import RelationshipProperty, configure_mappers

import pfd_db.models as models
from pfd_db.models import Base

TABLES = Base.metadata.tables

EXPECTED_TABLES = {
    "users", "session_logs", "login_history", "backup_codes", "api_keys", "api_usage",
    "api_request_logs", "api_metrics_summary", "datasets", "signals", "experiments",
    "training_runs", "hpo_campaigns", "explanations", "nas_campaigns", "nas_trials",
    "dataset_generations", "dataset_imports", "notification_preferences", "email_logs",
    "email_digest_queue", "webhook_configurations", "webhook_logs", "tags",
    "experiment_tags", "saved_searches", "system_logs", "rollup_watermarks",
    "rollup_stale_periods",
}  # fmt: skip

# (table, column) -> (referred table, ON DELETE rule), straight from SCHEMA.md.
ON_DELETE = {
    ("session_logs", "user_id"): ("users", "CASCADE"),
    ("login_history", "user_id"): ("users", "SET NULL"),
    ("backup_codes", "user_id"): ("users", "CASCADE"),
    ("api_keys", "user_id"): ("users", "CASCADE"),
    ("api_usage", "api_key_id"): ("api_keys", "CASCADE"),
    ("api_request_logs", "api_key_id"): ("api_keys", "SET NULL"),
    ("datasets", "created_by"): ("users", "SET NULL"),
    ("signals", "dataset_id"): ("datasets", "CASCADE"),
    ("experiments", "dataset_id"): ("datasets", "RESTRICT"),
    ("experiments", "created_by"): ("users", "SET NULL"),
    ("experiments", "hpo_campaign_id"): ("hpo_campaigns", "SET NULL"),
    ("training_runs", "experiment_id"): ("experiments", "CASCADE"),
    ("hpo_campaigns", "dataset_id"): ("datasets", "RESTRICT"),
    ("hpo_campaigns", "best_experiment_id"): ("experiments", "SET NULL"),
    ("hpo_campaigns", "created_by"): ("users", "SET NULL"),
    ("explanations", "experiment_id"): ("experiments", "CASCADE"),
    ("nas_campaigns", "dataset_id"): ("datasets", "RESTRICT"),
    ("nas_campaigns", "best_trial_id"): ("nas_trials", "SET NULL"),
    ("nas_trials", "campaign_id"): ("nas_campaigns", "CASCADE"),
    ("notification_preferences", "user_id"): ("users", "CASCADE"),
    ("email_logs", "user_id"): ("users", "SET NULL"),
    ("email_digest_queue", "user_id"): ("users", "CASCADE"),
    ("webhook_configurations", "user_id"): ("users", "CASCADE"),
    ("webhook_logs", "webhook_config_id"): ("webhook_configurations", "CASCADE"),
    ("webhook_logs", "user_id"): ("users", "SET NULL"),
    ("tags", "created_by"): ("users", "SET NULL"),
    ("experiment_tags", "experiment_id"): ("experiments", "CASCADE"),
    ("experiment_tags", "tag_id"): ("tags", "CASCADE"),
    ("experiment_tags", "added_by"): ("users", "SET NULL"),
    ("saved_searches", "user_id"): ("users", "CASCADE"),
    ("system_logs", "user_id"): ("users", "SET NULL"),
}

COMPOSITE_INDEXES = {
    "ix_training_runs_experiment_epoch": ("training_runs", ["experiment_id", "epoch"], True),
    "idx_digest_queue_user_scheduled": ("email_digest_queue", ["user_id", "scheduled_for"], False),
    "idx_digest_queue_included": (
        "email_digest_queue", ["included_in_digest", "scheduled_for"], False,
    ),
    "idx_digest_queue_event_scheduled": (
        "email_digest_queue", ["event_type", "scheduled_for"], False,
    ),
    "ix_api_metrics_summary_period_type": (
        "api_metrics_summary", ["period_start", "aggregation_type"], True,
    ),
    "idx_system_log_time_status": ("system_logs", ["created_at", "status"], False),
    "idx_system_log_user_time": ("system_logs", ["user_id", "created_at"], False),
    "ix_backup_codes_user_unused": ("backup_codes", ["user_id", "is_used"], False),
    "ix_nas_trials_campaign_trial": ("nas_trials", ["campaign_id", "trial_number"], True),
}  # fmt: skip

LATER_COMPOSITE_INDEXES = {  # added by revisions after 0001: the contract's list is a floor
    "ix_api_request_logs_rollup": (
        "api_request_logs", ["request_time", "response_time_ms", "status_code", "endpoint"], False,
    ),
    "ix_api_request_logs_endpoint_time": ("api_request_logs", ["endpoint", "request_time"], False),
    "ix_api_request_logs_key_time": ("api_request_logs", ["api_key_id", "request_time"], False),
    "ix_api_usage_key_time": ("api_usage", ["api_key_id", "timestamp"], False),
    "ix_login_history_user_time": ("login_history", ["user_id", "timestamp"], False),
    "idx_system_log_action_time": ("system_logs", ["action", "created_at"], False),
}  # fmt: skip

NAMED_UNIQUES = {
    "uq_user_event_type": ("notification_preferences", ["user_id", "event_type"]),
    "uq_user_webhook_url": ("webhook_configurations", ["user_id", "webhook_url"]),
    "uq_experiment_tag": ("experiment_tags", ["experiment_id", "tag_id"]),
    "uq_user_saved_search_name": ("saved_searches", ["user_id", "name"]),
    "uq_explanations_experiment_id_signal_id_method": (
        "explanations",
        ["experiment_id", "signal_id", "method"],
    ),
    "uq_rollup_stale_periods_aggregation_type_period_start": (  # revision 0010
        "rollup_stale_periods",
        ["aggregation_type", "period_start"],
    ),
}

# Class.relationship -> the ON DELETE rule of the foreign key behind it.
RELATIONSHIPS = {
    "User.api_keys": "CASCADE",
    "User.sessions": "CASCADE",
    "User.notification_preferences": "CASCADE",
    "User.email_logs": "SET NULL",
    "User.digest_queue": "CASCADE",
    "User.webhook_configurations": "CASCADE",
    "User.webhook_logs": "SET NULL",
    "User.saved_searches": "CASCADE",
    "Dataset.experiments": "RESTRICT",
    "Dataset.signals": "CASCADE",
    "Dataset.nas_campaigns": "RESTRICT",
    "Experiment.training_runs": "CASCADE",
    "Experiment.experiment_tags": "CASCADE",
    "APIKey.usage_records": "CASCADE",
    "APIKey.request_logs": "SET NULL",
    "WebhookConfiguration.logs": "CASCADE",
    "Tag.experiment_tags": "CASCADE",
    "NASCampaign.trials": "CASCADE",
}

MODEL_NAMES = [
    "User", "SessionLog", "LoginHistory", "BackupCode", "APIKey", "APIUsage", "APIRequestLog",
    "APIMetricsSummary", "Dataset", "Signal", "Experiment", "TrainingRun", "HPOCampaign",
    "Explanation", "NASCampaign", "NASTrial", "DatasetGeneration", "DatasetImport",
    "NotificationPreference", "EmailLog", "EmailDigestQueue", "WebhookConfiguration",
    "WebhookLog", "Tag", "ExperimentTag", "SavedSearch", "SystemLog", "RollupWatermark",
    "RollupStalePeriod",
]  # fmt: skip


def all_foreign_keys() -> list[ForeignKey]:
    return [fk for table in TABLES.values() for fk in table.foreign_keys]


def relationship_named(path: str) -> RelationshipProperty[object]:
    class_name, attr = path.split(".")
    configure_mappers()
    return inspect(getattr(models, class_name)).relationships[attr]


def test_the_29_tables_exist_each_with_a_model():
    assert set(TABLES) == EXPECTED_TABLES
    assert {getattr(models, name).__tablename__ for name in MODEL_NAMES} == EXPECTED_TABLES


def test_31_foreign_keys_each_with_its_on_delete_rule():
    found = {
        (fk.parent.table.name, fk.parent.name): (fk.column.table.name, fk.ondelete)
        for fk in all_foreign_keys()
    }
    assert len(all_foreign_keys()) == 31
    assert found == ON_DELETE


def test_every_foreign_key_column_leads_an_index():
    def leading_columns(table_name: str) -> set[str]:
        table = TABLES[table_name]
        leads = {next(iter(ix.columns)).name for ix in table.indexes}
        leads |= {
            next(iter(c.columns)).name
            for c in table.constraints
            if isinstance(c, UniqueConstraint) and c.columns
        }
        return leads

    unindexed = [
        f"{table}.{column}" for table, column in ON_DELETE if column not in leading_columns(table)
    ]
    assert unindexed == []


def test_the_9_composite_indexes():
    composite = {
        ix.name: (ix.table.name, [c.name for c in ix.columns], ix.unique)
        for table in TABLES.values()
        for ix in table.indexes
        if isinstance(ix, Index) and len(ix.columns) > 1
    }
    assert len(COMPOSITE_INDEXES) == 9
    assert composite == {**COMPOSITE_INDEXES, **LATER_COMPOSITE_INDEXES}


def test_the_6_named_unique_constraints():
    named = {
        c.name: (table.name, [col.name for col in c.columns])
        for table in TABLES.values()
        for c in table.constraints
        if isinstance(c, UniqueConstraint) and len(c.columns) > 1
    }
    assert named == NAMED_UNIQUES


@pytest.mark.parametrize("path", sorted(RELATIONSHIPS))
def test_relationship_is_two_way_and_its_cascade_agrees_with_the_rule(path):
    rel = relationship_named(path)
    inverse = rel.mapper.relationships[rel.back_populates]
    assert inverse.back_populates == rel.key
    rule = RELATIONSHIPS[path]
    fk_rules = {
        fk.ondelete for fk in rel.mapper.local_table.foreign_keys if fk.parent in rel.remote_side
    }
    assert fk_rules == {rule}
    if rule == "CASCADE":
        assert rel.cascade.delete and rel.cascade.delete_orphan and rel.passive_deletes is True
    elif rule == "SET NULL":
        assert not rel.cascade.delete and rel.passive_deletes is True
    else:  # RESTRICT: the ORM must neither delete nor orphan the children
        assert not rel.cascade.delete and rel.passive_deletes == "all"


def test_the_enumerations_and_constants_are_exported():
    assert [s.value for s in models.ExperimentStatus] == [
        "pending", "running", "paused", "completed", "failed", "cancelled",
    ]  # fmt: skip
    assert [m.value for m in models.HPOMethod] == [
        "grid_search", "random_search", "bayesian", "hyperband",
    ]  # fmt: skip
    job_values = ["pending", "running", "completed", "failed", "cancelled"]
    assert [s.value for s in models.DatasetGenerationStatus] == job_values
    assert [s.value for s in models.DatasetImportStatus] == job_values
    assert [r.value for r in models.Role] == ["viewer", "operator", "admin", "super_admin"]
    assert len(models.EventType) == 13  # the 12 of SCHEMA.md and test.webhook (revision 0003)
    assert {s.value for s in models.EmailStatus} == {
        "pending", "sent", "delivered", "failed", "bounced", "opened", "clicked",
    }  # fmt: skip
    assert {s.value for s in models.WebhookStatus} == {
        "pending", "sent", "failed", "rate_limited", "timeout", "invalid_url", "provider_error",
    }  # fmt: skip


def test_default_preferences_follow_the_schema():
    prefs = models.default_preferences()
    emailed = {event.value for event, pref in prefs.items() if pref["email_enabled"]}
    assert emailed == {
        "training.complete", "training.failed", "hpo.campaign_complete",
        "hpo.campaign_failed", "system.maintenance",
    }  # fmt: skip
    assert len(prefs) == 12
    assert {pref["email_frequency"] for pref in prefs.values()} == {"immediate"}


def test_every_table_has_timestamps_and_an_integer_id():
    for table in TABLES.values():
        assert {"id", "created_at", "updated_at"} <= set(table.columns.keys()), table.name
        assert not table.c.created_at.nullable and table.c.created_at.server_default is not None


def test_big_tables_use_64_bit_keys_on_postgresql():
    from sqlalchemy.dialects import postgresql

    big = {
        "login_history", "api_usage", "api_request_logs", "signals", "training_runs",
        "email_logs", "webhook_logs", "system_logs",
    }  # fmt: skip
    pg = postgresql.dialect()
    for name in big:
        assert TABLES[name].c.id.type.compile(dialect=pg) == "BIGINT", name
