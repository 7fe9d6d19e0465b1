"""Every public function of the store, driven with hostile values on both dialects.

For each public function of each module of :mod:`pfd_db.store` (no leading
underscore, defined in that module), :data:`CALLS` says how to make a valid
call from a :class:`World` of fixtures, built through the store once per
dialect and committed; every call is rolled back after. A new public function
without an entry fails its test. Hypothesis then makes calls in which one
argument (or one part of it: a key of a document, an item of a list, a field
of a row) is replaced by a hostile value: NUL characters, lone surrogates,
over-long text, 2**31, 2**63, -2**31-1, NaN, infinities (as numbers and inside
documents), None, wrong types, other records, documents nested too deep.
Helpers that the store calls with values it checked itself (the status
machine, the login history's counts) are marked ``internal``: only their valid
call is made.

The rule each call must keep, else it *escaped*:

- it returns, or raises a :class:`~pfd_db.errors.PfdDbError`; nothing else;
- a call that returns leaves nothing in its transaction that a column cannot
  hold by the rules of :mod:`pfd_db.values` (NaN, a NUL, 2**31 in an integer
  column: all things SQLite would store);
- a call that raises leaves every table as it was, both inside its
  transaction (nothing was written before the refusal) and after the caller's
  rollback (nothing was committed behind the caller's back);
- a refusal comes from pfd-db's own checks, not from the database refusing a
  value (which aborts the transaction on PostgreSQL and names no field).

Credential checks record refused attempts by design: for them the tables named
in their entry's ``records`` may change. A call that returns is rolled back,
and must leave the tables as they were too (the store never commits).

The counts (cases tried, accepted, refused cleanly, escaped) per function and
dialect are printed at the end of the run and written to
``.pytest_cache/d/pfd-fuzz/counts.txt``. ``PFD_FUZZ_SCALE=10`` tries ten times
as many cases.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import pkgutil
import reprlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Text,
    TextClause,
    cast,
    delete,
    func,
    literal,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import pfd_db.store
from conftest import empty_tables
from pfd_db.errors import InvalidInput, PfdDbError
from pfd_db.models import (
    APIKey,
    APIRequestLog,
    Base,
    Dataset,
    DatasetGeneration,
    DatasetImport,
    EmailDigestQueue,
    Experiment,
    ExperimentStatus,
    Explanation,
    HPOCampaign,
    JobStatus,
    LoginHistory,
    NASCampaign,
    NASTrial,
    SavedSearch,
    Tag,
    User,
)
from pfd_db.models.column_values import check_row
from pfd_db.models.enums import Aggregation, LoginMethod
from pfd_db.store.validation import require_count

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another long passphrase 42"
SCALE = int(os.environ.get("PFD_FUZZ_SCALE", "1"))  # e.g. 10 for a deeper, slower run
EXAMPLES_PER_ARGUMENT = 6 * SCALE
MAX_EXAMPLES = 40 * SCALE


# --- the public functions -------------------------------------------------------


def public_functions() -> dict[str, Callable[..., Any]]:
    """``module.function`` -> function, for every public function of every store module."""
    found: dict[str, Callable[..., Any]] = {}
    for info in pkgutil.walk_packages(pfd_db.store.__path__, "pfd_db.store."):
        if info.ispkg:
            continue
        module = importlib.import_module(info.name)
        short = info.name.rpartition(".")[2]
        for name, value in vars(module).items():
            if (
                inspect.isfunction(value)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{short}.{name}"] = value
    return found


FUNCTIONS = public_functions()


# --- the fixtures every call starts from -----------------------------------------


@dataclass
class World:
    """Committed records in the states the valid calls need."""

    user: User
    other_user: User
    setup_user: User
    setup_secret: str
    totp_user: User
    totp_secret: str
    backup_codes: list[str]
    session_token: str
    api_key: APIKey
    api_plaintext: str
    dataset: Dataset
    spare_dataset: Dataset
    pending: Experiment
    running: Experiment
    paused: Experiment
    done: Experiment
    hpo: HPOCampaign
    nas: NASCampaign
    trial: NASTrial
    tag: Tag
    saved: SavedSearch
    generation: DatasetGeneration
    running_import: DatasetImport
    explanation: Explanation
    extra: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[Base]:
        """One record of each kind, to pass where another kind is expected."""
        return [self.user, self.dataset, self.done, self.hpo, self.nas, self.tag, self.saved]


def build_world(db) -> World:
    from pfd_db.store.identity import api_keys, sessions, twofactor, users
    from pfd_db.store.ml import (
        campaigns,
        curves,
        datasets,
        experiments,
        explanations,
        jobs,
        search,
        tags,
    )

    user = users.create_user(db, "fuzz_user", "fuzz@example.com", PASSWORD)
    other_user = users.create_user(db, "fuzz_other", "other@example.com", PASSWORD, "admin")
    setup_user = users.create_user(db, "fuzz_setup", "setup@example.com", PASSWORD)
    totp_user = users.create_user(db, "fuzz_totp", "totp@example.com", PASSWORD)
    setup_secret, _ = twofactor.begin_setup(db, setup_user)
    totp_secret, _ = twofactor.begin_setup(db, totp_user)
    totp_user.totp_enabled = True  # as confirm_setup leaves it, without recording a login
    backup_codes = twofactor.generate_backup_codes(db, totp_user, 5)
    session_token, session_log = sessions.start_session(
        db, user, ip="10.0.0.1", user_agent="Mozilla/5.0"
    )
    api_plaintext, api_key = api_keys.issue(db, user, "ci", ["read", "write"])

    dataset = datasets.register_dataset(
        db, "cwru", ["normal", "inner_race"], ["mild", "severe"], "data/cwru.h5"
    )
    spare_dataset = datasets.register_dataset(db, "spare", ["normal"], ["mild"], "data/spare.h5")
    datasets.add_signals(
        db,
        dataset,
        [
            {"signal_id": "sig-1", "fault_class": "normal", "rms": 0.5},
            {"signal_id": "sig-2", "fault_class": "inner_race", "severity": "mild"},
        ],
    )
    pending = experiments.create_experiment(db, "pending-exp", "cnn1d", dataset, {"lr": 0.01})
    running = experiments.create_experiment(db, "running-exp", "cnn1d", dataset, {"lr": 0.01})
    paused = experiments.create_experiment(db, "paused-exp", "lstm", dataset, {"lr": 0.01})
    done = experiments.create_experiment(
        db, "done-exp", "resnet18", dataset, {"lr": 0.01}, notes="bearing baseline"
    )
    for experiment in (running, paused, done):
        experiments.start(db, experiment)
    experiments.pause(db, paused)
    curves.log_epochs(db, done, [_epoch(e) for e in range(3)])
    experiments.finish(db, done, {"val_accuracy": 0.9}, duration_seconds=12.5)

    hpo = campaigns.create_hpo_campaign(
        db, "sweep", "random_search", "cnn1d", dataset, {"lr": [0.1, 0.01]}, {"trials": 4}, 4
    )
    nas = campaigns.create_nas_campaign(db, "nas-1", dataset, num_trials=5)
    trial = campaigns.add_trial(db, nas, {"depth": 2}, {"validation_accuracy": 0.7})
    tag = tags.get_or_create_tag(db, "fuzz", "#ff0000", user)
    tags.tag_experiment(db, done, tag, user)
    saved = search.save_search(db, user, "mine", "tag:fuzz")
    generation = jobs.create_generation(db, "gen-1", {"signals": 10})
    running_import = jobs.create_import(db, "imp-1", {"path": "x.csv"})
    jobs.start(db, running_import)
    explanation, _ = explanations.get_or_compute(
        db, done, "sig-1", "shap", lambda: {"values": [0.1, 0.2]}
    )
    world = World(
        user=user,
        other_user=other_user,
        setup_user=setup_user,
        setup_secret=setup_secret,
        totp_user=totp_user,
        totp_secret=totp_secret,
        backup_codes=backup_codes,
        session_token=session_token,
        api_key=api_key,
        api_plaintext=api_plaintext,
        dataset=dataset,
        spare_dataset=spare_dataset,
        pending=pending,
        running=running,
        paused=paused,
        done=done,
        hpo=hpo,
        nas=nas,
        trial=trial,
        tag=tag,
        saved=saved,
        generation=generation,
        running_import=running_import,
        explanation=explanation,
    )
    world.extra["session_log"] = session_log
    _build_notifications(db, world)
    db.commit()
    return world


def _build_notifications(db, world: World) -> None:
    """A webhook, queued e-mail and webhook deliveries claimed by ``worker-1``, and
    a digest entry: what the notification modules' calls start from."""
    from pfd_db.store.notify import deliveries, notifications, webhooks

    webhook, secret = webhooks.create_webhook(
        db, world.user, "https://example.com/hook", ["training.complete"]
    )
    notifications.set_preference(
        db, world.user, "hpo.campaign_complete", email_frequency="digest_daily"
    )
    notifications.emit(db, "training.complete", [world.user], {"experiment": "done-exp"})
    notifications.emit(db, "hpo.campaign_complete", [world.user], {"campaign": "sweep"})
    db.flush()
    world.extra.update(
        webhook=webhook,
        webhook_secret=secret,
        email_delivery=deliveries.claim(db, "email", "worker-1")[0],
        webhook_delivery=deliveries.claim(db, "webhook", "worker-1")[0],
        digest_entry=db.scalars(select(EmailDigestQueue)).first(),
    )


def _code(secret: str, at: datetime) -> str:
    return str(pyotp.TOTP(secret).at(at))


def _epoch(epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_loss": 1.0 / (epoch + 1),
        "val_loss": 1.2 / (epoch + 1),
        "train_accuracy": 0.5 + epoch / 10,
        "val_accuracy": 0.45 + epoch / 10,
    }


# --- how to call each function validly ---------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A valid call of one function, made fresh for each case from the world.

    ``trusted``: parameters a programmer supplies (a model class, a field name
    for messages, a state machine), not data: they are not fuzzed.
    ``internal``: a helper the store itself calls with records it loaded and
    values it checked (the status machine, the login history's counts): every
    parameter is trusted, and the test only makes sure the valid call works.
    ``records``: tables the function writes by design even when it refuses (a
    credential check records the refused attempt).
    """

    valid: Callable[[World], dict[str, Any]]
    trusted: tuple[str, ...] = ()
    records: frozenset[str] = frozenset()
    internal: bool = False


ATTEMPTS = frozenset({"login_history"})
LOCKOUT = frozenset({"login_history", "users", "system_logs"})  # a lock is audited


def _gone_partition() -> Any:
    """A monthly partition no database has (dropping it is nothing to do)."""
    from pfd_db.store.ops.partitions import Partition

    start, end = datetime(1999, 1, 1, tzinfo=UTC), datetime(1999, 2, 1, tzinfo=UTC)
    return Partition("api_request_logs", "api_request_logs_p1999_01", start, end, 0)


def _attempt(w: World) -> Any:
    from pfd_db.store.identity.logins import Attempt

    return Attempt(w.user.id, w.user.username, LoginMethod.PASSWORD, datetime.now(UTC), "10.0.0.1")


def _now() -> datetime:
    return datetime.now(UTC)


def _hour() -> datetime:
    return _now().replace(minute=0, second=0, microsecond=0)


def _reread(w: World) -> dict[str, Any]:
    return {"row": w.running}


CALLS: dict[str, Entry] = {
    # audit
    "audit.acting_as": Entry(lambda w: {"user": w.user}),
    "audit.acting_as_verified": Entry(lambda w: {"user_id": w.user.id}, internal=True),
    "audit.actor": Entry(lambda w: {}),
    "audit.record": Entry(
        lambda w: {
            "actor": w.user,
            "action": "user.role_changed",
            "status": "success",
            "details": {"user_id": w.other_user.id, "role": "admin"},
            "error": None,
        }
    ),
    "audit.about": Entry(
        lambda w: {"user": w.other_user, "action": "user.role_changed", "role": "admin"}
    ),
    "audit.entries": Entry(
        lambda w: {
            "since": _now() - timedelta(days=1),
            "until": _now() + timedelta(days=1),
            "actor": w.user,
            "action": "user.created",
            "status": "success",
            "text": "ada",
            "limit": 10,
            "before_id": 10**6,
        }
    ),
    # api_keys
    "api_keys.issue": Entry(
        lambda w: {"user": w.user, "name": "deploy", "scopes": ["read"], "rate_limit": 10}
    ),
    "api_keys.verify": Entry(lambda w: {"key": w.api_plaintext}, records=ATTEMPTS),
    "api_keys.revoke": Entry(lambda w: {"key": w.api_key}),
    "api_keys.get_key": Entry(lambda w: {"id_or_prefix": w.api_key.prefix}),
    "api_keys.list_keys": Entry(lambda w: {"user": w.user}),
    "api_keys.has_scope": Entry(lambda w: {"key": w.api_key, "scope": "read"}),
    "api_keys.record_usage": Entry(
        lambda w: {
            "key": w.api_key,
            "endpoint": "/api/experiments",
            "method": "GET",
            "status_code": 200,
            "ms": 12,
        }
    ),
    "api_keys.check_rate_limit": Entry(lambda w: {"key": w.api_key}),
    "rate_limits.consume": Entry(lambda w: {"key": w.api_key, "now": _now()}),
    # campaigns
    "campaigns.transition": Entry(lambda w: {"campaign": w.hpo, "status": "running"}),
    "campaigns.create_hpo_campaign": Entry(
        lambda w: {
            "name": "sweep-2",
            "method": "bayesian",
            "base_model_type": "cnn1d",
            "dataset": w.dataset,
            "search_space": {"lr": {"low": 0.001, "high": 0.1}},
            "budget": {"hours": 2},
            "trials_total": 10,
            "created_by": w.user,
        }
    ),
    "campaigns.record_trial": Entry(
        lambda w: {"campaign": w.hpo, "experiment": w.done, "accuracy": 0.91}
    ),
    "campaigns.create_nas_campaign": Entry(
        lambda w: {
            "name": "nas-2",
            "dataset": w.dataset,
            "search_algorithm": "evolution",
            "num_trials": 8,
            "max_epochs_per_trial": 3,
            "search_space_config": {"depth": [1, 2, 3]},
        }
    ),
    "campaigns.architecture_hash": Entry(lambda w: {"architecture": {"layers": [16, 32]}}),
    "campaigns.add_trial": Entry(
        lambda w: {
            "campaign": w.nas,
            "architecture": {"depth": 3, "width": 64},
            "results": {
                "validation_accuracy": 0.8,
                "num_parameters": 12_000,
                "flops": 3 * 10**9,
                "metrics": {"f1": 0.75},
            },
        }
    ),
    "campaigns.trials": Entry(lambda w: {"campaign": w.nas}),
    "campaigns.hpo_trials": Entry(lambda w: {"campaign": w.hpo}),
    # credentials
    "credentials.presented": Entry(lambda w: {"value": "a code", "field": "code"}, ("field",)),
    "credentials.optional_client_text": Entry(
        lambda w: {"value": "10.0.0.1", "field": "ip"}, ("field",)
    ),
    # datasets
    "datasets.register_dataset": Entry(
        lambda w: {
            "name": "paderborn",
            "fault_types": ["normal", "outer_race"],
            "severity_levels": ["mild"],
            "file_path": "data/pb.h5",
            "num_signals": 0,
            "description": "bearings",
            "meta_data": {"rate_hz": 64000},
            "created_by": w.user.id,
        }
    ),
    "datasets.list_datasets": Entry(lambda w: {}),
    "datasets.get_dataset": Entry(lambda w: {"name": "cwru"}),
    "datasets.delete_dataset": Entry(lambda w: {"dataset": w.spare_dataset}),
    "datasets.add_signals": Entry(
        lambda w: {
            "dataset": w.dataset,
            "rows": [
                {
                    "signal_id": "sig-9",
                    "fault_class": "inner_race",
                    "severity": "severe",
                    "file_path": "s9.npy",
                    "rms": 0.1,
                    "kurtosis": 3.2,
                    "dominant_frequency": 157.0,
                }
            ],
        }
    ),
    "datasets.fault_class_counts": Entry(lambda w: {"dataset": w.dataset}),
    # deliveries
    "deliveries.claim": Entry(
        lambda w: {"channel": "email", "worker": "worker-2", "limit": 5, "lease_seconds": 30}
    ),
    "deliveries.succeed": Entry(
        lambda w: {
            "delivery": w.extra["webhook_delivery"],
            "worker": "worker-1",
            "http_status_code": 200,
            "response_body": "ok",
            "response_time_ms": 12.5,
        }
    ),
    "deliveries.fail": Entry(
        lambda w: {
            "delivery": w.extra["email_delivery"],
            "worker": "worker-1",
            "error": "mailbox full",
            "retry": True,
        }
    ),
    "deliveries.backoff": Entry(lambda w: {"attempts": 3}),
    "delivery_history.history": Entry(
        lambda w: {"channel": "webhook", "user": w.user, "webhook": w.extra["webhook"]}
        | {"limit": 10, "before_id": 1}
    ),
    "delivery_history.counts_by_status": Entry(
        lambda w: {"channel": "webhook", "user": w.user, "webhook": w.extra["webhook"]}
    ),
    # digests
    "digests.next_digest_at": Entry(lambda w: {"frequency": "digest_daily", "now": _now()}),
    "digests.due": Entry(lambda w: {"now": _now() + timedelta(days=8)}),
    "digests.mark_sent": Entry(lambda w: {"user": w.user, "entries": [w.extra["digest_entry"]]}),
    "digests.queue_stats": Entry(
        lambda w: {"now": _now(), "sent_since": _now() - timedelta(days=2)}
    ),
    "digests.pending": Entry(
        lambda w: {
            "user": w.user,
            "frequency": "digest_daily",
            "event_type": "training.complete",
            "since": _now() - timedelta(days=1),
            "until": _now() + timedelta(days=8),
            "limit": 10,
            "after_id": w.extra["digest_entry"].id,
        }
    ),
    "digests.sent_history": Entry(
        lambda w: {
            "user": w.user,
            "event_type": "training.complete",
            "since": _now() - timedelta(days=1),
            "until": _now() + timedelta(days=8),
            "limit": 10,
            "before_id": 10**6,
        }
    ),
    "digests.users_with_entries": Entry(
        lambda w: {"pending_only": True, "limit": 10, "after_id": 0}
    ),
    # experiments
    "experiments.create_experiment": Entry(
        lambda w: {
            "name": "new-exp",
            "model_type": "cnn1d",
            "dataset": w.dataset,
            "config": {"lr": 0.001, "layers": [32, 64]},
            "hyperparameters": {"batch": 32},
            "notes": "a note",
            "created_by": w.user.id,
            "hpo_campaign": w.hpo,
        }
    ),
    "experiments.get_experiment": Entry(lambda w: {"name": "done-exp"}),
    "experiments.delete_experiment": Entry(lambda w: {"experiment": w.done}),
    "experiments.transition": Entry(lambda w: {"experiment": w.running, "new_status": "paused"}),
    "experiments.start": Entry(lambda w: {"experiment": w.pending}),
    "experiments.pause": Entry(lambda w: {"experiment": w.running}),
    "experiments.resume": Entry(lambda w: {"experiment": w.paused}),
    "experiments.cancel": Entry(lambda w: {"experiment": w.pending}),
    "experiments.fail": Entry(lambda w: {"experiment": w.running}),
    "experiments.finish": Entry(
        lambda w: {
            "experiment": w.running,
            "metrics": {"val_accuracy": 0.93, "per_class": {"normal": 0.99}},
            "duration_seconds": 30.0,
            "status": "completed",
        }
    ),
    "curves.log_epoch": Entry(
        lambda w: {
            "experiment": w.running,
            "epoch": 4,
            "train_loss": 0.3,
            "val_loss": 0.4,
            "train_accuracy": 0.8,
            "val_accuracy": 0.75,
            "learning_rate": 0.01,
            "duration_seconds": 1.5,
            "checkpoint_path": "ckpt/4.pt",
            "metrics": {"f1": 0.7, "val.top-5": 0.9},
        }
    ),
    "curves.log_epochs": Entry(
        lambda w: {
            "experiment": w.running,
            "rows": [
                _epoch(0),
                {
                    **_epoch(1),
                    "learning_rate": 0.1,
                    "duration_seconds": 2.0,
                    "checkpoint_path": "ckpt/1.pt",
                    "metrics": {"f1": 0.6},
                },
            ],
        }
    ),
    "curves.curve": Entry(lambda w: {"experiment": w.done}),
    "curves.curve_columns": Entry(
        lambda w: {"experiment": w.done, "metrics": ["val_loss", "val_accuracy"]}
    ),
    # explanations
    "explanations.find_explanation": Entry(
        lambda w: {"experiment": w.done, "signal_id": "sig-1", "method": "shap"}
    ),
    "explanations.get_or_compute": Entry(
        lambda w: {
            "experiment": w.done,
            "signal_id": "sig-2",
            "method": "lime",
            "compute": lambda: {"weights": [0.1, 0.2], "label": "inner_race"},
            "file_path": "lime.png",
        }
    ),
    # jobs
    "jobs.create_generation": Entry(
        lambda w: {"name": "gen-2", "config": {"n": 5}, "celery_task_id": "task-1"}
    ),
    "jobs.create_import": Entry(
        lambda w: {"name": "imp-2", "config": {"path": "y.csv"}, "celery_task_id": "task-2"}
    ),
    "jobs.start": Entry(lambda w: {"job": w.generation}),
    "jobs.update_progress": Entry(lambda w: {"job": w.running_import, "progress": 50}),
    "jobs.complete": Entry(
        lambda w: {
            "job": w.running_import,
            "duration_seconds": 3.5,
            "output_path": "out/imp",
            "num_signals": 10,
            "num_files": 2,
        }
    ),
    "jobs.fail": Entry(lambda w: {"job": w.running_import, "error_message": "disk full"}),
    "jobs.cancel": Entry(lambda w: {"job": w.generation}),
    # logins
    "logins.history": Entry(
        lambda w: {
            "user": w.user,
            "since": _now() - timedelta(days=1),
            "until": _now(),
            "success": False,
            "limit": 10,
            "before_id": 10**6,
        }
    ),
    "logins.record_attempt": Entry(
        lambda w: {"attempt": _attempt(w), "reason": "wrong password"}, internal=True
    ),

    "logins.address": Entry(lambda w: {"ip": "10.0.0.1"}, internal=True),
    "logins.recent_failures": Entry(
        lambda w: {
            "user_id": w.user.id,
            "methods": [LoginMethod.PASSWORD],
            "window": timedelta(minutes=15),
            "now": _now(),
            "reason": "wrong password",
        },
        internal=True,
    ),
    "logins.failures_from_address": Entry(
        lambda w: {
            "attempt": _attempt(w),
            "reasons": ["wrong password"],
            "window": timedelta(minutes=15),
        },
        internal=True,
    ),
    "logins.latest_failure_times": Entry(
        lambda w: {
            "user_id": w.user.id,
            "method": LoginMethod.PASSWORD,
            "reason": "wrong password",
            "window": timedelta(minutes=15),
            "now": _now(),
            "n": 5,
        },
        internal=True,
    ),
    "logins.succeeded_from": Entry(
        lambda w: {"attempt": _attempt(w), "window": timedelta(minutes=15)}, internal=True
    ),
    # inbox: a user's notifications (their e-mails), read or unread
    "inbox.notifications": Entry(
        lambda w: {"user": w.user, "unread": True, "limit": 10, "before_id": 1}
    ),
    "inbox.unread_count": Entry(lambda w: {"user": w.user}),
    "inbox.mark_read": Entry(
        lambda w: {"user": w.user, "notification": w.extra["email_delivery"], "now": _now()}
    ),
    "inbox.mark_all_read": Entry(lambda w: {"user": w.user, "now": _now()}),
    # notifications
    "notifications.add_default_preferences": Entry(lambda w: {"user": w.other_user}),
    "notifications.preferences": Entry(lambda w: {"user": w.user}),
    "notifications.set_preference": Entry(
        lambda w: {
            "user": w.user,
            "event_type": "training.failed",
            "email_enabled": False,
            "in_app_enabled": True,
            "slack_enabled": True,
            "webhook_enabled": False,
            "email_frequency": "digest_weekly",
        }
    ),
    "notifications.emit": Entry(
        lambda w: {
            "event_type": "training.complete",
            "users": [w.user, w.other_user.id],
            "data": {"experiment": "done-exp", "accuracy": 0.9},
            "subject": "Done",
        }
    ),
    # own_transaction
    "own_transaction.in_own_transaction": Entry(
        lambda w: {"work": lambda own: own.scalar(select(func.count()).select_from(Tag))},
        internal=True,
    ),
    # paging: helpers of the listing functions (columns are the programmer's)
    "paging.page_size": Entry(lambda w: {"limit": 25}),
    "paging.in_range": Entry(
        lambda w: {
            "column": LoginHistory.timestamp,
            "since": _now() - timedelta(days=1),
            "until": _now(),
        },
        ("column",),
    ),
    "paging.before": Entry(
        lambda w: {"time": LoginHistory.timestamp, "ident": LoginHistory.id, "before_id": 1},
        ("time", "ident"),
    ),
    "paging.window": Entry(
        lambda w: {
            "column": LoginHistory.timestamp,
            "since": _now() - timedelta(days=1),
            "until": _now(),
        },
        ("column",),
    ),
    "paging.moment": Entry(lambda w: {"value": _now(), "field": "since"}, ("field",)),
    "paging.newest_page": Entry(
        lambda w: {
            "time": LoginHistory.timestamp,
            "ident": LoginHistory.id,
            "conditions": [],
            "limit": 10,
            "before_id": 1,
        },
        ("time", "ident", "conditions"),
    ),
    # query_language
    "query_language.parse": Entry(lambda w: {"text": 'resnet "outer race" metric.f1>0.5'}),
    "query_language.day_after": Entry(
        lambda w: {"start": datetime(2026, 1, 1, tzinfo=UTC)}, internal=True
    ),
    # retention: the maintenance job, on its own engine (dry runs: nothing is old here)
    "retention.clean": Entry(
        lambda w: {
            "bind": w.extra["engine"],
            "older_than": timedelta(days=30),
            "tables": ["login_history"],
            "dry_run": True,
            "batch_size": 100,
        },
        ("bind", "progress"),
    ),
    "retention.check_arguments": Entry(
        lambda w: {"tables": ["login_history"], "older_than": timedelta(days=30), "batch_size": 10}
    ),
    # rollups
    "rotation.reencrypt_batch": Entry(  # the column is the programmer's
        lambda w: {"column": User.totp_secret, "after_id": 0, "limit": 10}, ("column",)
    ),
    "rollups.rollup": Entry(
        lambda w: {
            "period": "hourly",
            "start": _hour() - timedelta(hours=2),
            "end": _hour(),
        }
    ),
    "rollups.summaries": Entry(
        lambda w: {"period": "hourly", "since": _hour() - timedelta(days=1), "limit": 10}
    ),
    "rollups.period_start": Entry(
        lambda w: {"kind": Aggregation.DAILY, "moment": _now(), "field": "moment"},
        ("kind", "field"),
    ),
    "rollups.roll_up_periods": Entry(
        lambda w: {"period": "hourly", "starts": [_hour() - timedelta(hours=1), _hour()]}
    ),
    # rollup_schedule: incremental rollups
    "partitions.partitioned_tables": Entry(lambda w: {}),
    "partitions.list_partitions": Entry(lambda w: {"exact": True}),
    "partitions.ensure_partitions": Entry(lambda w: {"ahead": 1, "dry_run": True, "now": _now()}),
    "partitions.partitions_before": Entry(
        lambda w: {"table": "api_request_logs", "cutoff": _now(), "exact": False}
    ),
    "partitions.straddling": Entry(lambda w: {"table": "system_logs", "cutoff": _now()}),
    "partitions.drop_partition": Entry(lambda w: {"partition": _gone_partition()}),
    "partitions.drop_before": Entry(
        lambda w: {"cutoff": datetime(2001, 1, 1, tzinfo=UTC), "tables": ["api_usage"]}
    ),
    "rollup_schedule.refresh": Entry(lambda w: {"period": "daily", "now": _now(), "limit": 10}),
    "rollup_schedule.note_late_rows": Entry(lambda w: {"moments": [_now(), _hour()]}),
    "rollup_schedule.watermark": Entry(lambda w: {"period": "weekly"}),
    "rollup_schedule.reset": Entry(lambda w: {}),
    "rollups.count_by_endpoint": Entry(  # conditions are built by the store
        lambda w: {"conditions": [APIRequestLog.status_code >= 400], "limit": 5}, internal=True
    ),
    "rollups.percentiles": Entry(
        lambda w: {"conditions": [APIRequestLog.status_code >= 400]}, internal=True
    ),
    "request_figures.request_stats": Entry(
        lambda w: {"since": _now() - timedelta(days=1), "until": _now()}
    ),
    "request_figures.request_percentiles": Entry(
        lambda w: {"since": _now() - timedelta(days=1), "until": _now()}
    ),
    "rollups.percentiles_by_endpoint": Entry(
        lambda w: {"conditions": [APIRequestLog.status_code >= 400], "endpoints": ["/a"]},
        internal=True,
    ),
    # search
    "search.search": Entry(
        lambda w: {"query": "bearing tag:fuzz metric.val_accuracy>0.5", "limit": 10, "offset": 0}
    ),
    "search.save_search": Entry(
        lambda w: {"user": w.user, "name": "best", "query": "status:completed", "pinned": True}
    ),
    "search.saved_searches": Entry(lambda w: {"user": w.user}),
    "search.run_saved_search": Entry(lambda w: {"saved": w.saved, "limit": 5, "offset": 0}),
    "search.pin": Entry(lambda w: {"saved": w.saved, "pinned": True}),
    "search.delete_saved_search": Entry(lambda w: {"saved": w.saved}),
    # sessions
    "sessions.start_session": Entry(
        lambda w: {
            "user": w.user,
            "ip": "192.168.1.2",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            "ttl": timedelta(hours=2),
        }
    ),
    "sessions.resolve": Entry(lambda w: {"token": w.session_token}),
    "sessions.end_session": Entry(lambda w: {"token": w.session_token}),
    "sessions.end_all_sessions": Entry(lambda w: {"user": w.user}),
    "sessions.active_sessions": Entry(lambda w: {"user": w.user}),
    "sessions.list_active": Entry(lambda w: {"user": w.user}),
    "sessions.revoke": Entry(lambda w: {"user": w.user, "session_id": w.extra["session_log"]}),
    "sessions.revoke_others": Entry(lambda w: {"user": w.user, "keep": w.extra["session_log"]}),
    # status: the shared status machine, called with records the store loaded
    "status.move_status": Entry(
        lambda w: {
            "row": w.generation,
            "new": JobStatus.RUNNING,
            "allowed": {JobStatus.PENDING: frozenset({JobStatus.RUNNING})},
        },
        internal=True,
    ),
    "status.update_if": Entry(lambda w: {"row": w.running_import, "progress": 10}, internal=True),
    "status.update_where": Entry(
        lambda w: {
            "model": DatasetImport,
            "where": [DatasetImport.id == w.running_import.id],
            "progress": 20,
        },
        internal=True,
    ),
    "status.reread": Entry(_reread, internal=True),
    "status.row_id": Entry(_reread, internal=True),
    "status.describe": Entry(_reread, internal=True),
    # tags
    "tags.slugify": Entry(lambda w: {"name": "Größe 日本語 tag"}),
    "tags.get_or_create_tag": Entry(
        lambda w: {"name": "baseline", "color": "#00ff00", "created_by": w.user}
    ),
    "tags.popular_tags": Entry(lambda w: {"limit": 5}),
    "tags.suggest_tags": Entry(lambda w: {"prefix": "fu", "limit": 5}),
    "tags.tag_experiment": Entry(
        lambda w: {"experiment": w.running, "tag": w.tag, "added_by": w.user}
    ),
    "tags.untag_experiment": Entry(lambda w: {"experiment": w.done, "tag": w.tag}),
    "tags.bulk_tag": Entry(
        lambda w: {"experiments": [w.pending, w.running.id], "tag": w.tag, "added_by": w.user.id}
    ),
    "tags.bulk_untag": Entry(lambda w: {"experiments": [w.done], "tag": w.tag}),
    "tags.detach_all": Entry(lambda w: {"experiments": [w.done, w.running.id]}),
    # traffic
    "remote_text.storable": Entry(
        lambda w: {"text": "Mozilla/5.0", "length": 500}, internal=True
    ),
    "remote_text.checked": Entry(
        lambda w: {"value": "Mozilla/5.0", "field": "user_agent", "length": 500},
        ("field", "length"),  # the column's length: the programmer's
    ),
    "request_log.status_code": Entry(lambda w: {"value": 200}),
    "request_log.record_requests": Entry(
        lambda w: {
            "rows": [
                {
                    "endpoint": "/api/experiments",
                    "method": "get",
                    "status_code": 200,
                    "response_time_ms": 12.5,
                    "request_time": _now(),
                    "request_size_bytes": 10,
                    "response_size_bytes": 2048,
                    "ip_address": "10.0.0.1",
                    "user_agent": "curl/8.0",
                    "api_key_id": w.api_key.id,
                    "error_message": None,
                    "request_payload_sample": {"q": "x"},
                    "response_payload_sample": [1, 2],
                }
            ]
        }
    ),
    "request_log.refuse_unknown_keys": Entry(
        lambda w: {"rows": [(w.api_key.id, "x")], "at": 0}, ("rows", "at")
    ),
    "usage_log.record_usage": Entry(
        lambda w: {
            "rows": [
                {
                    "api_key_id": w.api_key.id,
                    "endpoint": "/api/v1/experiments/{id}",
                    "method": "get",
                    "status_code": 200,
                    "response_time_ms": 3,
                    "timestamp": _now(),
                }
            ]
        }
    ),
    "request_lists.recent_requests": Entry(
        lambda w: {
            "since": _now() - timedelta(days=1),
            "until": _now(),
            "endpoint": "/api/experiments",
            "api_key": w.api_key,
            "status_code": 200,
            "errors_only": False,
            "limit": 10,
            "before_id": 10**6,
        }
    ),
    "request_lists.error_logs": Entry(
        lambda w: {
            "since": _now() - timedelta(days=1),
            "endpoint": "/api/experiments",
            "limit": 10,
            "before_id": 10**6,
        }
    ),
    "request_figures.endpoint_metrics": Entry(
        lambda w: {"since": _now() - timedelta(days=1), "until": _now(), "limit": 10}
    ),
    "request_figures.timeline": Entry(
        lambda w: {
            "since": _now() - timedelta(hours=3),
            "until": _now(),
            "bucket": timedelta(hours=1),
        }
    ),
    "request_figures.top_api_keys": Entry(
        lambda w: {"since": _now() - timedelta(days=1), "limit": 5}
    ),
    "request_figures.key_usage": Entry(
        lambda w: {"key": w.api_key, "since": _now() - timedelta(days=1), "endpoints": 5}
    ),
    # twofactor
    "twofactor.begin_setup": Entry(lambda w: {"user": w.user}),
    "twofactor.confirm_setup": Entry(
        lambda w: {"user": w.setup_user, "code": _code(w.setup_secret, _now())}, records=ATTEMPTS
    ),
    "twofactor.disable": Entry(lambda w: {"user": w.totp_user}),
    "twofactor.reencrypt_secrets": Entry(lambda w: {"after_id": 0, "limit": 10}),
    "twofactor.verify_totp": Entry(
        lambda w: {
            "user": w.totp_user,
            "code": _code(w.totp_secret, _now()),
            "ip": "10.0.0.1",
            "user_agent": "Mozilla/5.0",
        },
        records=ATTEMPTS,
    ),
    "twofactor.generate_backup_codes": Entry(lambda w: {"user": w.totp_user, "n": 3}),
    "twofactor.use_backup_code": Entry(
        lambda w: {"user": w.totp_user, "code": w.backup_codes[0], "ip": "10.0.0.1"},
        records=ATTEMPTS,
    ),
    "twofactor.remaining_backup_codes": Entry(lambda w: {"user": w.totp_user}),
    # useragent
    "useragent.parse": Entry(lambda w: {"user_agent": "Mozilla/5.0 (iPhone) Mobile Safari/604"}),
    "useragent.device_type": Entry(lambda w: {"user_agent": "curl/8.0"}),
    "useragent.browser": Entry(lambda w: {"user_agent": "Mozilla/5.0 Firefox/120.0"}),
    # users
    "users.create_user": Entry(
        lambda w: {
            "username": "new_user",
            "email": "new@example.com",
            "password": PASSWORD,
            "role": "operator",
        }
    ),
    "users.authenticate": Entry(
        lambda w: {
            "username": "fuzz_user",
            "password": PASSWORD,
            "ip": "10.0.0.1",
            "user_agent": "Mozilla/5.0",
        },
        records=LOCKOUT,
    ),
    "users.change_password": Entry(lambda w: {"user": w.user, "new_password": NEW_PASSWORD}),
    "users.reset_password": Entry(lambda w: {"user": w.user, "new_password": NEW_PASSWORD}),
    "users.set_role": Entry(lambda w: {"user": w.user, "role": "admin"}),
    "users.deactivate": Entry(lambda w: {"user": w.other_user}),
    "users.get_by_username": Entry(lambda w: {"username": "fuzz_user"}),
    "users.list_users": Entry(lambda w: {}),
    # validation: the value is data; the rest is the programmer's
    "validation.require_text": Entry(
        lambda w: {"value": "name", "field": "name", "max_length": 50}, ("field", "max_length")
    ),
    "validation.require_str": Entry(
        lambda w: {"value": "name", "field": "name", "max_length": 50}, ("field", "max_length")
    ),
    "validation.optional_str": Entry(
        lambda w: {"value": "name", "field": "name", "max_length": 50}, ("field", "max_length")
    ),
    "validation.require_object": Entry(lambda w: {"value": {"a": [1]}, "field": "f"}, ("field",)),
    "validation.require_json": Entry(lambda w: {"value": [{"a": 1}], "field": "f"}, ("field",)),
    "validation.require_flag": Entry(lambda w: {"value": True, "field": "f"}, ("field",)),
    "validation.require_items": Entry(lambda w: {"values": ["a", 1], "field": "f"}, ("field",)),
    "validation.each_row": Entry(
        lambda w: {"rows": [1, 2], "check": lambda row: require_count(row, "n")}, ("check",)
    ),
    "validation.require_row": Entry(
        lambda w: {"row": {"a": 1}, "keys": frozenset({"a", "b"}), "required": frozenset({"a"})},
        ("keys", "required"),
    ),
    "validation.require_identifiers": Entry(
        lambda w: {"values": ["normal", "oil_whirl"], "field": "f"}, ("field",)
    ),
    "validation.require_member": Entry(
        lambda w: {"value": "running", "enum": ExperimentStatus, "field": "status"},
        ("enum", "field"),
    ),
    "validation.check_transition": Entry(
        lambda w: {
            "what": "job",
            "current": JobStatus.PENDING,
            "new": JobStatus.RUNNING,
            "allowed": {JobStatus.PENDING: frozenset({JobStatus.RUNNING})},
        },
        ("what", "current", "new", "allowed"),
    ),
    "validation.optional_text": Entry(
        lambda w: {"value": "x", "field": "f", "max_length": 5}, ("field", "max_length")
    ),
    "validation.optional_object": Entry(lambda w: {"value": {"a": 1}, "field": "f"}, ("field",)),
    "validation.require_finite": Entry(lambda w: {"value": 0.5, "field": "f"}, ("field",)),
    "validation.optional_finite": Entry(lambda w: {"value": 0.5, "field": "f"}, ("field",)),
    "validation.require_non_negative": Entry(
        lambda w: {"value": 0.5, "field": "f"}, ("field",)
    ),
    "validation.require_count": Entry(
        lambda w: {"value": 3, "field": "f", "minimum": 0, "maximum": 10},
        ("field", "minimum", "maximum"),
    ),
    # webhook_targets
    "webhook_targets.check_url": Entry(lambda w: {"value": "https://hooks.example.com/x"}),
    "webhook_targets.resolve_target": Entry(lambda w: {"url": "https://93.184.216.34:8443/x"}),
    "webhook_targets.is_internal": Entry(lambda w: {"address": "169.254.169.254"}),
    # webhooks
    "webhooks.create_webhook": Entry(
        lambda w: {
            "user": w.user,
            "url": "https://example.org/other",
            "events": ["training.failed", "hpo.campaign_complete"],
            "provider": "slack",
            "name": "alerts",
            "description": "team alerts",
            "settings": {"channel": "#ml"},
        }
    ),
    "webhooks.get_webhook": Entry(lambda w: {"webhook": w.extra["webhook"], "user": w.user}),
    "webhooks.list_webhooks": Entry(lambda w: {"user": w.user}),
    "webhooks.update_webhook": Entry(
        lambda w: {
            "webhook": w.extra["webhook"],
            "url": "https://example.org/renamed",
            "events": ["training.started"],
            "provider": "teams",
            "name": "renamed",
            "description": "moved to the new endpoint",
            "settings": {"retries": 3},
        }
    ),
    "webhooks.enable": Entry(lambda w: {"webhook": w.extra["webhook"]}),
    "webhooks.disable": Entry(lambda w: {"webhook": w.extra["webhook"], "reason": "maintenance"}),
    "webhooks.delete_webhook": Entry(lambda w: {"webhook": w.extra["webhook"]}),
    "webhooks.rotate_secret": Entry(lambda w: {"webhook": w.extra["webhook"]}),
    "webhooks.signature": Entry(
        lambda w: {"config": w.extra["webhook"], "body": '{"event": "x"}', "now": _now()}
    ),
    "webhooks.payload": Entry(
        lambda w: {
            "event_type": "training.complete",
            "data": {"experiment": "done-exp"},
            "now": _now(),
        }
    ),
    "webhooks.send_test": Entry(lambda w: {"webhook": w.extra["webhook"]}),
    "webhooks.new_delivery": Entry(
        lambda w: {
            "config": w.extra["webhook"],
            "event_type": "training.complete",
            "data": {"experiment": "done-exp"},
            "now": _now(),
        }
    ),
    "webhooks.record_success": Entry(lambda w: {"webhook": w.extra["webhook"].id, "now": _now()}),
    "webhooks.record_failure": Entry(
        lambda w: {"webhook": w.extra["webhook"].id, "error": "timeout", "now": _now()}
    ),
    "webhooks.stats": Entry(lambda w: {"webhook": w.extra["webhook"]}),
    "webhooks.reencrypt_secrets": Entry(lambda w: {"after_id": 0, "limit": 10}),
    # writes: shared write helpers (model classes and keys are the programmer's)
    "writes.take_write_lock": Entry(lambda w: {}, internal=True),
    "writes.insert_for": Entry(lambda w: {"model": Tag}, internal=True),
    "writes.insert_ignoring_conflicts": Entry(lambda w: {"model": Tag}, internal=True),
    "writes.add_unique": Entry(
        lambda w: {
            "row": Tag(name="unique", slug="unique"),
            "key": {Tag.slug: "unique"},
            "conflict": "taken",
        },
        internal=True,
    ),
    "writes.set_unique": Entry(
        lambda w: {
            "row": w.tag,
            "values": {"color": "#123456"},
            "key": Tag.slug == "never-a-slug",
            "conflict": "taken",
        },
        internal=True,
    ),
    "writes.load": Entry(
        lambda w: {"model": Experiment, "record": w.done.id, "field": "experiment"},
        ("model", "field"),
    ),
    "writes.load_one_of": Entry(
        lambda w: {
            "kinds": (HPOCampaign, NASCampaign),
            "record": w.hpo.id,
            "kind": HPOCampaign,
            "field": "campaign",
        },
        ("kinds", "field"),
    ),
    "writes.one_of_kinds": Entry(
        lambda w: {"record": w.hpo, "kinds": (HPOCampaign, NASCampaign), "field": "campaign"},
        ("kinds", "field"),
    ),
    "writes.require_id": Entry(
        lambda w: {"model": Dataset, "record": w.dataset, "field": "dataset"}, ("model", "field")
    ),
    "writes.id_of": Entry(
        lambda w: {"model": User, "record": w.user, "field": "user"}, ("model", "field")
    ),
    "writes.unread_id": Entry(
        lambda w: {"model": Experiment, "record": w.done.id, "field": "experiment"},
        ("model", "field"),
    ),
}


# --- hostile values ----------------------------------------------------------------


def nested(depth: int) -> list[Any]:
    document: list[Any] = []
    for _ in range(depth - 1):
        document = [document]
    return document


NAIVE = datetime(2026, 1, 1)
SCALARS: list[Callable[[], object]] = [
    lambda: None,
    lambda: "a\x00b",
    lambda: "\ud800",
    lambda: "ok\udfff",
    lambda: "x" * 100_000,
    lambda: "",
    lambda: "   ",
    lambda: "text",
    lambda: 2**31,
    lambda: 2**63,
    lambda: -(2**31) - 1,
    lambda: -(2**63) - 1,
    lambda: 2**64,
    lambda: -1,
    lambda: 0,
    lambda: 7,
    lambda: math.nan,
    lambda: math.inf,
    lambda: -math.inf,
    lambda: 1.5,
    lambda: True,
    lambda: 1j,
    lambda: Decimal("NaN"),
    lambda: b"bytes",
    lambda: object(),
    lambda: ["a"],
    lambda: {"k": "v"},
    lambda: {1, 2},
    lambda: NAIVE,
    lambda: datetime.max.replace(tzinfo=UTC),
    lambda: datetime.min.replace(tzinfo=UTC),
    lambda: timedelta.max,
    lambda: timedelta(days=-1),
    lambda: ExperimentStatus.FAILED,
    lambda: LoginMethod.API_KEY,
]
JSON_LEAVES: list[Callable[[], object]] = [
    lambda: math.nan,
    lambda: math.inf,
    lambda: -math.inf,
    lambda: "a\x00b",
    lambda: "\ud800",
    lambda: object(),
    lambda: b"bytes",
    lambda: Decimal("1.5"),
    lambda: {1, 2},
    lambda: 1j,
    lambda: NAIVE,
    lambda: nested(5000),
    lambda: 2**70,
    lambda: None,
]
HOSTILE_KEYS: list[object] = ["\x00", "a\x00b", "\ud800", 1, None, (1, 2), 1.5]
ABSENT = object()


def fresh(makers: list[Callable[[], object]]) -> st.SearchStrategy[object]:
    return st.sampled_from(makers).map(lambda make: make())


def hostile(valid: object, world: World, depth: int = 0) -> st.SearchStrategy[object]:
    """Values to put where ``valid`` goes: hostile scalars, and ``valid`` itself
    with one part spoiled (a document's key or value, a list's item)."""
    options: list[st.SearchStrategy[object]] = [fresh(SCALARS)]
    if isinstance(valid, str):
        options.append(st.sampled_from([valid + "\x00", "\ud800" + valid, valid + "x" * 2000]))
    elif isinstance(valid, Mapping) and depth < 3:
        options.append(_spoiled_document(dict(valid), world, depth))
    elif isinstance(valid, list | tuple) and depth < 3:
        options.append(_spoiled_sequence(list(valid), world, depth))
    elif isinstance(valid, Base):
        others = [r for r in world.records() if type(r) is not type(valid)]
        options.append(st.sampled_from([*others, 0, 10**6, 2**31, -(2**31) - 1, "1"]))
    elif callable(valid) and not isinstance(valid, type):
        options.append(
            st.one_of(
                fresh(SCALARS).map(lambda value: lambda: value),
                _spoiled_document({"weights": [0.1]}, world, depth).map(lambda doc: lambda: doc),
            )
        )
    return st.one_of(options)


def _spoiled_document(valid: dict[Any, Any], world: World, depth: int) -> st.SearchStrategy[object]:
    keys = [*valid, "fuzz"]
    leaf = fresh(JSON_LEAVES)
    options = [
        st.tuples(st.sampled_from(keys), leaf).map(lambda kv: {**valid, kv[0]: kv[1]}),
        st.tuples(st.sampled_from(keys), leaf).map(
            lambda kv: {**valid, kv[0]: {"inner": [1, kv[1]]}}
        ),
        st.sampled_from(HOSTILE_KEYS).map(lambda key: {**valid, key: 1}),
    ]
    if valid:
        options.append(
            st.sampled_from(list(valid)).flatmap(
                lambda key: hostile(valid[key], world, depth + 1).map(
                    lambda value: {**valid, key: value}
                )
            )
        )
    return st.one_of(options)


def _spoiled_sequence(valid: list[Any], world: World, depth: int) -> st.SearchStrategy[object]:
    options = [
        fresh(SCALARS).map(lambda value: [*valid, value]),
        fresh(JSON_LEAVES).map(lambda value: [value, *valid]),
        st.just([]),
    ]
    if valid:
        options.append(hostile(valid[0], world, depth + 1).map(lambda value: [value, *valid[1:]]))
    return st.one_of(options)


# --- the tables, before and after -------------------------------------------------


@cache
def _snapshot_sql(dialect_name: str) -> TextClause:
    """Every row of every table as text, tagged with its table: one statement.
    PostgreSQL turns a whole row into text itself; on SQLite the columns are
    joined, with the constants rendered inline (nothing to bind)."""
    if dialect_name == "postgresql":
        quote = postgresql.dialect().identifier_preparer.quote
        return text(
            " UNION ALL ".join(
                f"SELECT '{table.name}' AS t, x::text AS row FROM {quote(table.name)} x"
                for table in Base.metadata.sorted_tables
            )
        )
    parts = []
    for table in Base.metadata.sorted_tables:
        row = literal("", Text)
        for column in table.columns:
            row = row + "|" + func.coalesce(cast(column, Text), "<null>")
        parts.append(select(literal(table.name, Text).label("t"), row.label("row")))
    rendered = union_all(*parts).compile(
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
    )
    return text(str(rendered))


def snapshot(db) -> dict[str, Counter[str]]:
    with db.no_autoflush:
        rows = db.execute(_snapshot_sql(db.get_bind().dialect.name)).all()
    tables: dict[str, Counter[str]] = {name: Counter() for name in Base.metadata.tables}
    for table, row in rows:
        tables[table][row] += 1
    return tables


def changed(before: Mapping[str, Counter[str]], after: Mapping[str, Counter[str]]) -> set[str]:
    return {name for name in before if before[name] != after.get(name)}


def unstorable_values(db, tables: set[str]) -> list[str]:
    """What the changed ``tables`` now hold that their columns cannot hold."""
    problems = []
    with db.no_autoflush:
        for name in sorted(tables):
            table = Base.metadata.tables[name]
            columns = [c for c in table.columns if c.computed is None]
            for row in db.execute(select(*columns)).mappings():
                try:
                    check_row(table, row)
                except InvalidInput as exc:
                    problems.append(str(exc)[:200])
    return problems


# --- one case ---------------------------------------------------------------------


REFUSED_BY_THE_DATABASE = (DBAPIError, OverflowError, UnicodeEncodeError)


@dataclass
class Tally:
    tried: int = 0
    accepted: int = 0
    refused: int = 0
    escapes: list[str] = field(default_factory=list)


def run_case(
    db,
    function: Callable[..., Any],
    arguments: dict[str, Any],
    baseline: dict[str, Counter[str]],
    records: frozenset[str],
) -> tuple[str, str | None]:
    """("accepted" | "refused" | "escaped", what went wrong)."""
    takes_session = next(iter(inspect.signature(function).parameters), None) == "session"
    try:
        if takes_session:
            function(db, **arguments)
        else:
            function(**arguments)
    except PfdDbError as exc:
        return _after_refusal(db, exc, baseline, records)
    except Exception as exc:
        db.rollback()
        return "escaped", f"{type(exc).__name__}: {str(exc)[:160]}"
    problem = None
    try:
        written = changed(baseline, snapshot(db))
        stored = unstorable_values(db, written - records)
        if stored:
            problem = f"stored what its column cannot hold: {stored[0]}"
    finally:
        db.rollback()
    kept = changed(baseline, snapshot(db)) - records
    if kept:
        problem = problem or f"returned, and {sorted(kept)} stayed changed after the rollback"
    return ("escaped", problem) if problem else ("accepted", None)


def _after_refusal(
    db, exc: PfdDbError, baseline: dict[str, Counter[str]], records: frozenset[str]
) -> tuple[str, str | None]:
    cause = exc.__cause__
    refused_late = isinstance(exc, InvalidInput) and isinstance(cause, REFUSED_BY_THE_DATABASE)
    try:
        during = changed(baseline, snapshot(db)) - records
    except DBAPIError:  # PostgreSQL: the transaction was aborted by a failed statement
        during = {"(transaction aborted)"}
    db.rollback()
    after = changed(baseline, snapshot(db)) - records
    name = type(exc).__name__
    if refused_late:
        return "escaped", f"{name} only from the database: {str(exc)[:160]}"
    if during:
        return "escaped", f"{name} after writing {sorted(during)}: {str(exc)[:120]}"
    if after:
        return "escaped", f"{name}, and {sorted(after)} stayed changed after the rollback"
    return "refused", f"{name}: {str(exc)[:160]}"


# --- the tests ---------------------------------------------------------------------


COUNTS: dict[tuple[str, str], Tally] = {}


@pytest.fixture(scope="session")
def fuzz_counts(request: pytest.FixtureRequest) -> Iterator[dict[tuple[str, str], Tally]]:
    """The tallies of the run. At its end, the counts per function go to
    ``.pytest_cache/d/pfd-fuzz/counts.txt``, and per module to the terminal."""
    yield COUNTS
    if not COUNTS:
        return
    by_module: dict[tuple[str, str], Tally] = {}
    for (name, dialect), tally in COUNTS.items():
        for key in (
            (name.split(".")[0], dialect),
            (f"TOTAL ({len(FUNCTIONS)} functions)", dialect),
        ):
            total = by_module.setdefault(key, Tally())
            total.tried += tally.tried
            total.accepted += tally.accepted
            total.refused += tally.refused
            total.escapes += tally.escapes
    written = None
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        written = cache.mkdir("pfd-fuzz") / "counts.txt"
        totals = {key: tally for key, tally in by_module.items() if key[0].startswith("TOTAL")}
        written.write_text("\n".join(_count_lines({**COUNTS, **totals}, "function")) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_sep("-", "store fuzz counts")
            for line in _count_lines(by_module, "module"):
                reporter.write_line(line)
            if written is not None:
                reporter.write_line(f"per function: {written}")


def _count_lines(tallies: Mapping[tuple[str, str], Tally], what: str) -> list[str]:
    lines = [f"{what:40} {'dialect':10} {'tried':>6} {'accepted':>9} {'refused':>8} {'escaped':>8}"]
    for (name, dialect), tally in sorted(
        tallies.items(), key=lambda item: ("TOTAL" in item[0][0], item[0])
    ):
        lines.append(
            f"{name:40} {dialect:10} {tally.tried:6} {tally.accepted:9} {tally.refused:8} "
            f"{len(tally.escapes):8}"
        )
    return lines


def test_every_entry_names_a_public_function():
    stale = sorted(set(CALLS) - set(FUNCTIONS))
    assert not stale, f"CALLS has entries for functions that are gone: {stale}"


def test_every_trusted_parameter_is_a_parameter():
    wrong = {
        name: [p for p in entry.trusted if p not in inspect.signature(FUNCTIONS[name]).parameters]
        for name, entry in CALLS.items()
        if name in FUNCTIONS
    }
    assert not {name: ps for name, ps in wrong.items() if ps}


@pytest.fixture(scope="module")
def shared(engine) -> Iterator[tuple[Session, World]]:
    """One world per dialect for every function of this module: calls are rolled
    back, so only what a credential check records outlasts them (see
    :func:`forget_attempts`)."""
    from pfd_db.models import Base as Models

    empty_tables(engine, Models.metadata)
    session = Session(bind=engine, expire_on_commit=False)
    try:
        world = build_world(session)
        world.extra["engine"] = engine
        yield session, world
    finally:
        session.close()
        empty_tables(engine, Models.metadata)


def forget_attempts(db) -> None:
    """Undo what earlier credential checks recorded in transactions of their own:
    login attempts, failure counts and locks, the TOTP replay guard."""
    db.rollback()
    db.execute(delete(LoginHistory))
    db.execute(update(User).values(failed_login_count=0, locked_until=None, totp_last_step=None))
    db.commit()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_hostile_values_are_refused_cleanly(shared, dialect, name, fuzz_counts):
    entry = CALLS.get(name)
    assert entry is not None, (
        f"pfd_db.store.{name} has no entry in CALLS: add how to call it validly, so that "
        "the fuzz test covers it"
    )
    function = FUNCTIONS[name]
    db, world = shared
    forget_attempts(db)
    baseline = snapshot(db)
    outcome, problem = run_case(db, function, entry.valid(world), baseline, entry.records)
    assert outcome == "accepted", f"the valid call of {name} did not pass: {problem}"

    signature = inspect.signature(function)
    parameters = [
        p.name
        for p in signature.parameters.values()
        if p.name != "session"
        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        and p.name not in entry.trusted
    ]
    extra = [k for k in entry.valid(world) if k not in signature.parameters]
    fuzzed = [] if entry.internal else sorted({*parameters, *extra})
    tally = COUNTS.setdefault((name, dialect), Tally())
    if not fuzzed:
        return

    @settings(
        max_examples=min(MAX_EXAMPLES, EXAMPLES_PER_ARGUMENT * len(fuzzed)),
        deadline=None,
        database=None,
        # Every health check stays on: none fires here (the strategies draw small
        # values from fixed lists; the inner test takes no fixtures).
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        arguments = entry.valid(world)
        target = data.draw(st.sampled_from(fuzzed), label="argument")
        default = signature.parameters[target].default if target in signature.parameters else None
        valid = arguments.get(target, None if default is inspect.Parameter.empty else default)
        arguments[target] = data.draw(hostile(valid, world), label="value")
        outcome, problem = run_case(db, function, arguments, baseline, entry.records)
        tally.tried += 1
        if outcome == "accepted":
            tally.accepted += 1
        elif outcome == "refused":
            tally.refused += 1
        else:
            tally.escapes.append(f"{target}={_short(arguments[target])}: {problem}")

    fuzz()
    assert not tally.escapes, f"{len(tally.escapes)} of {tally.tried} escaped:\n" + "\n".join(
        sorted(set(tally.escapes))[:25]
    )


def _short(value: object) -> str:
    text = reprlib.repr(value)  # bounded: a value may be nested thousands deep
    return text if len(text) <= 80 else f"{text[:60]}...<{len(text)} chars>"
