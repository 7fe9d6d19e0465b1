"""Initial data, idempotent: the admin user, their notification preferences and
the Default dataset. Running it again changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.config import Settings, get_settings
from pfd_db.errors import Conflict
from pfd_db.models import Dataset, Role, User
from pfd_db.passwords import generate_password, hash_password
from pfd_db.store.notify.notifications import add_default_preferences

ADMIN_USERNAME = "admin"
ADMIN_EMAIL = "admin@localhost"
DEFAULT_DATASET = "Default"
DEFAULT_NUM_SIGNALS = 1430
FAULT_TYPES = [
    "normal",
    "misalignment",
    "imbalance",
    "looseness",
    "lubrication",
    "cavitation",
    "wear",
    "oil_whirl",
    "combined_misalign_imbalance",
    "combined_wear_lube",
    "combined_cavit_jeu",
]
SEVERITY_LEVELS = ["incipient", "mild", "moderate", "severe"]


@dataclass
class SeedReport:
    """What a seed run created. ``admin_password`` is set only when the password was
    generated: it must be shown to the operator once and is not stored anywhere."""

    created: list[str] = field(default_factory=list)
    admin_password: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.created)


def seed(session: Session, settings: Settings | None = None) -> SeedReport:
    """Create whatever initial data is missing; flushes, the caller commits."""
    settings = settings or get_settings()
    report = SeedReport()
    admin = _ensure_admin(session, settings, report)
    _ensure_preferences(session, admin, report)
    _ensure_default_dataset(session, settings, report)
    session.flush()
    return report


def _ensure_admin(session: Session, settings: Settings, report: SeedReport) -> User:
    admin = session.scalar(select(User).where(User.username == ADMIN_USERNAME))
    if admin is not None:
        return admin
    clash = session.scalar(
        select(User).where(
            (func.lower(User.username) == ADMIN_USERNAME) | (func.lower(User.email) == ADMIN_EMAIL)
        )
    )
    if clash is not None:
        raise Conflict(
            f"cannot create the admin user {ADMIN_USERNAME!r} ({ADMIN_EMAIL}): user "
            f"{clash.username!r} ({clash.email}) has that name or e-mail address ignoring case; "
            "rename that user, then seed again"
        )
    if settings.admin_password is not None:
        password = settings.admin_password.get_secret_value()
    else:
        password = report.admin_password = generate_password()
    admin = User(
        username=ADMIN_USERNAME,
        email=ADMIN_EMAIL,
        role=Role.ADMIN,
        password_hash=hash_password(password),
    )
    session.add(admin)
    session.flush()
    report.created.append(f"user {ADMIN_USERNAME!r} (role admin)")
    return admin


def _ensure_preferences(session: Session, user: User, report: SeedReport) -> None:
    added = add_default_preferences(session, user)
    if added:
        report.created.append(f"{added} notification preferences for {user.username!r}")


def _ensure_default_dataset(session: Session, settings: Settings, report: SeedReport) -> None:
    if session.scalar(select(Dataset.id).where(Dataset.name == DEFAULT_DATASET)) is not None:
        return
    session.add(
        Dataset(
            name=DEFAULT_DATASET,
            description="Bearing fault dataset: 11 fault classes at 4 severities.",
            num_signals=DEFAULT_NUM_SIGNALS,
            fault_types=list(FAULT_TYPES),
            severity_levels=list(SEVERITY_LEVELS),
            file_path=settings.default_dataset_path,
        )
    )
    report.created.append(f"dataset {DEFAULT_DATASET!r} ({DEFAULT_NUM_SIGNALS} signals)")
