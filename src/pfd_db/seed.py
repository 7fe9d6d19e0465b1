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
from pfd_db.store.writes import add_unique, take_write_lock

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
    """Create whatever initial data is missing; flushes, the caller commits.

    Seeds running at once create each thing once: on SQLite the second waits for
    the first's write lock, then finds everything there; on PostgreSQL a seed that
    loses the race to add a row finds the winner's once it has committed, and
    reports it as already present. :class:`Conflict` only if another user holds
    the admin's name or e-mail address ignoring case."""
    settings = settings or get_settings()
    report = SeedReport()
    take_write_lock(session)  # SQLite: what is read below is what is written against
    admin = _ensure_admin(session, settings, report)
    _ensure_preferences(session, admin, report)
    _ensure_default_dataset(session, settings, report)
    session.flush()
    return report


def _ensure_admin(session: Session, settings: Settings, report: SeedReport) -> User:
    admin = _existing_admin(session)
    if admin is not None:
        return admin
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
    try:
        add_unique(session, admin, _ADMIN_CLASH, conflict=f"user {ADMIN_USERNAME!r} exists")
    except Conflict:
        report.admin_password = None  # not this run's password: another seed's admin won
        existing = _existing_admin(session)  # a clash with another user raises here
        if existing is None:
            raise
        return existing
    report.created.append(f"user {ADMIN_USERNAME!r} (role admin)")
    return admin


_ADMIN_CLASH = (func.lower(User.username) == ADMIN_USERNAME) | (
    func.lower(User.email) == ADMIN_EMAIL
)


def _existing_admin(session: Session) -> User | None:
    """The admin user, None if there is none; :class:`Conflict` if another user
    holds the admin's name or e-mail address ignoring case."""
    admin = session.scalar(select(User).where(User.username == ADMIN_USERNAME))
    if admin is not None:
        return admin
    clash = session.scalar(select(User).where(_ADMIN_CLASH))
    if clash is not None:
        raise Conflict(
            f"cannot create the admin user {ADMIN_USERNAME!r} ({ADMIN_EMAIL}): user "
            f"{clash.username!r} ({clash.email}) has that name or e-mail address ignoring case; "
            "rename that user, then seed again"
        )
    return None


def _ensure_preferences(session: Session, user: User, report: SeedReport) -> None:
    added = add_default_preferences(session, user)
    if added:
        report.created.append(f"{added} notification preferences for {user.username!r}")


def _ensure_default_dataset(session: Session, settings: Settings, report: SeedReport) -> None:
    if session.scalar(select(Dataset.id).where(Dataset.name == DEFAULT_DATASET)) is not None:
        return
    dataset = Dataset(
        name=DEFAULT_DATASET,
        description="Bearing fault dataset: 11 fault classes at 4 severities.",
        num_signals=DEFAULT_NUM_SIGNALS,
        fault_types=list(FAULT_TYPES),
        severity_levels=list(SEVERITY_LEVELS),
        file_path=settings.default_dataset_path,
    )
    try:
        add_unique(
            session,
            dataset,
            {Dataset.name: DEFAULT_DATASET},
            conflict=f"dataset {DEFAULT_DATASET!r} exists",
        )
    except Conflict:
        return  # another seed added it first: present, as this run wanted
    report.created.append(f"dataset {DEFAULT_DATASET!r} ({DEFAULT_NUM_SIGNALS} signals)")
