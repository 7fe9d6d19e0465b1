"""An LSTM_PFD dashboard database for the import tests, built from its own DDL.

``make_legacy(dialect, where)`` applies the dashboard's DDL (tests/legacy/,
copied verbatim from the format description in ../shared/legacy/) to a new
database and fills every one of its 27 tables the way the dashboard did: enum
NAMES, naive timestamps, bcrypt hashes made with the ``bcrypt`` package, TOTP
secrets and session tokens in clear. On SQLite,
whose legacy foreign keys were never enforced, it adds dangling references.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt

LEGACY_DIR = Path(__file__).resolve().parent / "legacy"
DDL = {"sqlite": "lstm_pfd_sqlite.sql", "postgresql": "lstm_pfd_postgresql.sql"}

ALICE_PASSWORD = "alice-old-pw"  # shorter than pfd-db's policy: accepted once anyway
TOTP_SECRET = "JBSWY3DPEHPK3PXP"
SESSION_TOKEN = "legacy-session-token-0123456789"
API_KEY = "sk_live_Abc123legacyKeyPlaintextValue"
BACKUP_CODES = ("AAAA-1111", "BBBB-2222")
WHEN = datetime(2024, 3, 1, 12, 30, 15, 123456)  # naive, as the dashboard wrote them
KEY_CREATED = datetime(2024, 3, 1, 13, 0, 0)  # the legacy server's local time
PLAINTEXTS = [ALICE_PASSWORD, TOTP_SECRET, SESSION_TOKEN, API_KEY, *BACKUP_CODES]


def _hash(secret: str) -> str:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=4)).decode()


def legacy_rows(dangling: bool) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) in an order that satisfies the legacy foreign keys."""
    t = {"created_at": WHEN, "updated_at": WHEN}
    rows: list[tuple[str, dict[str, Any]]] = [
        ("users", {"id": 1, "username": "alice", "email": "alice@example.com",
                   "password_hash": _hash(ALICE_PASSWORD), "role": "user", "is_active": True,
                   "totp_secret": TOTP_SECRET, "totp_enabled": True, **t}),
        ("users", {"id": 2, "username": "admin", "email": "admin@example.com",
                   "password_hash": None, "role": "admin", "is_active": True,
                   "totp_secret": None, "totp_enabled": False, **t}),
        ("users", {"id": 3, "username": "bob", "email": "Bob@Example.COM",
                   "password_hash": _hash("bob-password"), "role": "manager",
                   "is_active": None, "totp_secret": None, "totp_enabled": None, **t}),
        ("datasets", {"id": 1, "name": "cwru", "description": "bearings", "num_signals": 2,
                      "fault_types": json.dumps(["normal", "wear"]),
                      "severity_levels": json.dumps(["mild"]), "file_path": "data/cwru.h5",
                      "meta_data": json.dumps({"fs": 12000}), "created_by": 1, **t}),
        ("signals", {"id": 1, "dataset_id": 1, "signal_id": "s-1", "fault_class": "normal",
                     "severity": "mild", "file_path": None, "rms": 0.5, "kurtosis": 3.0,
                     "dominant_frequency": 29.5, **t}),
        ("signals", {"id": 2, "dataset_id": 1, "signal_id": "s-2", "fault_class": "wear",
                     "severity": "mild", "file_path": None, "rms": 0.9, "kurtosis": 6.8,
                     "dominant_frequency": 31.0, **t}),
        ("hpo_campaigns", {"id": 1, "name": "grid-1", "method": "GRID_SEARCH",
                           "status": "RUNNING", "base_model_type": "cnn1d", "dataset_id": 1,
                           "search_space": json.dumps({"lr": [0.1, 0.01]}),
                           "budget": json.dumps({"trials": 2}), "trials_completed": 1,
                           "trials_total": 2, "best_experiment_id": None,
                           "best_accuracy": 0.91, "created_by": 1, **t}),
        ("experiments", {"id": 1, "name": "bearing-cnn", "model_type": "cnn1d",
                         "dataset_id": 1, "status": "COMPLETED",
                         "config": json.dumps({"epochs": 3}),
                         "hyperparameters": json.dumps({"lr": 0.01}),
                         "metrics": json.dumps({"val_accuracy": 0.91}), "best_epoch": 2,
                         "total_epochs": 3, "duration_seconds": 12.5, "model_path": None,
                         "onnx_path": None, "results_dir": None,
                         "notes": "kurtosis spectrum baseline", "created_by": 1,
                         "hpo_campaign_id": 1, **t}),
        ("experiments", {"id": 2, "name": "pump-lstm", "model_type": "lstm", "dataset_id": 1,
                         "status": "RUNNING", "config": json.dumps({}),
                         "hyperparameters": None, "metrics": None, "best_epoch": None,
                         "total_epochs": None, "duration_seconds": None, "model_path": None,
                         "onnx_path": None, "results_dir": None, "notes": None,
                         "created_by": 42 if dangling else 2, "hpo_campaign_id": None, **t}),
        ("training_runs", {"id": 1, "experiment_id": 1, "epoch": 1, "train_loss": 0.9,
                           "val_loss": 1.0, "train_accuracy": 0.6, "val_accuracy": 0.55,
                           "learning_rate": 0.01, "duration_seconds": 4.0,
                           "checkpoint_path": None, **t}),
        ("training_runs", {"id": 2, "experiment_id": 1, "epoch": 2, "train_loss": 0.5,
                           "val_loss": 0.6, "train_accuracy": 0.8, "val_accuracy": 0.91,
                           "learning_rate": 0.01, "duration_seconds": 4.0,
                           "checkpoint_path": None, **t}),
        # the same epoch again (a resumed run): pfd-db keeps one row per epoch
        ("training_runs", {"id": 3, "experiment_id": 1, "epoch": 2, "train_loss": 0.4,
                           "val_loss": 0.6, "train_accuracy": 0.8, "val_accuracy": 0.9,
                           "learning_rate": 0.01, "duration_seconds": 4.0,
                           "checkpoint_path": None, **t}),
        ("explanations", {"id": 1, "experiment_id": 1, "signal_id": "s-2", "method": "shap",
                          "explanation_data": json.dumps({"values": [0.1, 0.2]}),
                          "file_path": None, **t}),
        ("nas_campaigns", {"id": 1, "name": "nas-1", "dataset_id": 1,
                           "search_algorithm": "random", "num_trials": 2,
                           "max_epochs_per_trial": 5, "search_space_config": None,
                           "status": "COMPLETED", "best_trial_id": None,
                           "best_accuracy": 0.8, "task_id": "t-1", "error_message": None, **t}),
        ("nas_trials", {"id": 1, "campaign_id": 1, "trial_number": 1,
                        "architecture": json.dumps({"layers": 3}), "architecture_hash": "h1",
                        "validation_accuracy": 0.8, "validation_loss": 0.5,
                        "training_time": 9.0, "num_parameters": 1000, "flops": 5000000000,
                        "model_size_mb": 1.5, "metrics": None, **t}),
        ("tags", {"id": 1, "name": "baseline", "slug": "baseline", "color": "#ff0000",
                  "created_by": 1, "usage_count": 5, **t}),
        ("tags", {"id": 2, "name": "Red Tag", "slug": "red-tag", "color": "red",
                  "created_by": 1, "usage_count": 0, **t}),
        ("experiment_tags", {"id": 1, "experiment_id": 1, "tag_id": 1, "added_by": 1, **t}),
        ("saved_searches", {"id": 1, "user_id": 1, "name": "cnns", "query": "model:cnn1d",
                            "is_pinned": True, "usage_count": 3, "last_used_at": WHEN, **t}),
        ("session_logs", {"id": 1, "user_id": 1, "session_token": SESSION_TOKEN,
                          "ip_address": "10.0.0.1", "user_agent": "Mozilla/5.0",
                          "device_type": "desktop", "browser": "Firefox", "location": None,
                          "last_active": WHEN, "is_active": True, "logged_out_at": None, **t}),
        ("login_history", {"id": 1, "user_id": 1, "ip_address": "10.0.0.1",
                           "user_agent": "Mozilla/5.0", "location": None,
                           "login_method": "password", "success": True,
                           "failure_reason": None, "timestamp": WHEN, **t}),
        *(
            ("backup_codes", {"id": i, "user_id": 1, "code_hash": _hash(code),
                              "is_used": False, "used_at": None, "ip_address": None, **t})
            for i, code in enumerate(BACKUP_CODES, start=1)
        ),
        ("api_keys", {"id": 1, "user_id": 1, "key_hash": _hash(API_KEY), "name": "ci",
                      "prefix": API_KEY[:20], "scopes": ["read", "write"], "rate_limit": 100,
                      "last_used_at": KEY_CREATED, "is_active": True, "expires_at": None,
                      "created_at": KEY_CREATED, "updated_at": KEY_CREATED}),
        ("api_usage", {"id": 1, "api_key_id": 1, "endpoint": "/api/experiments",
                       "method": "GET", "status_code": 200, "response_time_ms": 12,
                       "timestamp": KEY_CREATED}),
        ("api_usage", {"id": 2, "api_key_id": 1, "endpoint": "/api/experiments",
                       "method": "POST", "status_code": 201, "response_time_ms": 30,
                       "timestamp": None}),
        ("api_request_logs", {"id": 1, "endpoint": "/api/experiments", "method": "GET",
                              "status_code": 200, "request_time": WHEN,
                              "response_time_ms": 12.0, "request_size_bytes": 0,
                              "response_size_bytes": 512, "ip_address": "10.0.0.1",
                              "user_agent": "curl", "api_key_id": 1, "error_message": None,
                              "request_payload_sample": None,
                              "response_payload_sample": json.dumps({"ok": True}), **t}),
        ("api_metrics_summary", {"id": 1, "period_start": WHEN,
                                 "period_end": WHEN + timedelta(hours=1),
                                 "aggregation_type": "hourly", "total_requests": 10,
                                 "successful_requests": 9, "failed_requests": 1,
                                 "avg_response_time_ms": 12.0, "p50_response_time_ms": 10.0,
                                 "p95_response_time_ms": 30.0, "p99_response_time_ms": 40.0,
                                 "requests_per_second": 0.01, "error_rate": 0.1,
                                 "endpoint_metrics": json.dumps({}), **t}),
        ("system_logs", {"id": 1, "user_id": 1, "action": "login", "status": "success",
                         "details": json.dumps({"ip": "10.0.0.1"}), "error_message": None,
                         **t}),
        ("notification_preferences", {"id": 1, "user_id": 1, "event_type": "training.complete",
                                      "email_enabled": True, "in_app_enabled": True,
                                      "slack_enabled": False, "webhook_enabled": False,
                                      "email_frequency": "immediate", **t}),
        ("email_logs", {"id": 1, "user_id": 1, "recipient_email": "alice@example.com",
                        "event_type": "training.complete", "subject": "Done",
                        "template_name": "training_complete",
                        "event_data": json.dumps({"experiment": 1}), "provider": "smtp",
                        "message_id": "m-1", "status": "sent", "error_message": None,
                        "sent_at": WHEN, "delivered_at": None, "opened_at": None,
                        "clicked_at": None, "retry_count": 0, **t}),
        ("email_digest_queue", {"id": 1, "user_id": 1, "event_type": "hpo.trial_complete",
                                "event_data": json.dumps({"trial": 1}), "scheduled_for": WHEN,
                                "included_in_digest": False, **t}),
        ("webhook_configurations", {"id": 1, "user_id": 1, "provider_type": "slack",
                                    "webhook_url": "https://hooks.example.com/x",
                                    "name": "team", "description": None, "is_active": True,
                                    "enabled_events": json.dumps(["training.complete"]),
                                    "settings": json.dumps({}), "last_used_at": None,
                                    "last_error": None, "consecutive_failures": 0, **t}),
        ("webhook_logs", {"id": 1, "webhook_config_id": 1, "user_id": 1,
                          "event_type": "training.complete", "provider_type": "slack",
                          "webhook_url": "https://hooks.example.com/x",
                          "payload": json.dumps({"text": "done"}), "status": "sent",
                          "http_status_code": 200, "response_body": "ok",
                          "error_message": None, "retry_count": 0, "sent_at": WHEN, **t}),
        ("dataset_generations", {"id": 1, "name": "synthetic", "config": json.dumps({}),
                                 "status": "COMPLETED", "num_signals": 100, "num_faults": 11,
                                 "output_path": "out.h5", "progress": 100,
                                 "celery_task_id": "c-1", "duration_seconds": 60.0, **t}),
        ("dataset_imports", {"id": 1, "name": "mat-files", "config": json.dumps({}),
                             "status": "FAILED", "num_files": 3, "num_signals": None,
                             "output_path": None, "progress": 150, "celery_task_id": None,
                             "duration_seconds": None, **t}),
    ]  # fmt: skip
    # the cycle: the campaign's best experiment and trial, set once both exist
    rows.append(("hpo_campaigns", {"id": 1, "best_experiment_id": 1, "_update": True}))
    rows.append(("nas_campaigns", {"id": 1, "best_trial_id": 1, "_update": True}))
    if dangling:  # SQLite never enforced the legacy foreign keys
        orphan_run = {"id": 4, "experiment_id": 77, "epoch": 1, "train_loss": 1.0,
                      "val_loss": 1.0, "train_accuracy": 0.5, "val_accuracy": 0.5, **t}  # fmt: skip
        rows.append(("training_runs", orphan_run))
        rows.append(("experiment_tags", {"id": 2, "experiment_id": 2, "tag_id": 9, **t}))
    return rows


def make_legacy(dialect: str, where: str, connect: Any = None) -> dict[str, int]:
    """Build and fill a legacy database: ``where`` is a SQLite file path, or (with
    ``connect``, a psycopg autocommit connection factory) an empty PostgreSQL
    database. Returns the rows written per table."""
    ddl = (LEGACY_DIR / DDL[dialect]).read_text()
    rows = legacy_rows(dangling=dialect == "sqlite")
    if dialect == "sqlite":
        conn = sqlite3.connect(where)
        conn.executescript(ddl)
        _fill(conn, rows, "?", _sqlite_value)
        conn.commit()
        conn.close()
    else:
        with connect() as conn:
            conn.execute(ddl)
            _fill(conn, rows, "%s", lambda v: v)
    counts: dict[str, int] = {}
    for table, row in rows:
        if not row.get("_update"):
            counts[table] = counts.get(table, 0) + 1
    return counts


def _fill(conn: Any, rows: list[tuple[str, dict[str, Any]]], mark: str, adapt: Any) -> None:
    for table, row in rows:
        values = {k: v for k, v in row.items() if k != "_update"}
        if row.get("_update"):
            key = values.pop("id")
            sets = ", ".join(f"{name} = {mark}" for name in values)
            conn.execute(
                f"UPDATE {table} SET {sets} WHERE id = {mark}",
                [*map(adapt, values.values()), key],
            )
            continue
        names = ", ".join(f'"{name}"' for name in values)
        marks = ", ".join(mark for _ in values)
        conn.execute(
            f"INSERT INTO {table} ({names}) VALUES ({marks})", [adapt(v) for v in values.values()]
        )


def _sqlite_value(value: Any) -> Any:
    """A value as the dashboard's SQLAlchemy stored it in SQLite."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list):
        return json.dumps(value)
    return value
