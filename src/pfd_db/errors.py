"""The errors pfd-db raises on purpose.

Every error derives from :class:`PfdDbError`, so a caller can catch the whole
family in one place, and from SQLAlchemy's ``DontWrapMixin``, so an error raised
while a statement is being prepared (a naive datetime, say) reaches the caller
as itself instead of wrapped in ``StatementError``. Messages name what was
wrong and never carry a secret.
"""

from __future__ import annotations

from sqlalchemy.exc import DontWrapMixin


class PfdDbError(DontWrapMixin, Exception):
    """Base of every error raised by pfd-db."""


class NotFound(PfdDbError, LookupError):
    """The named record does not exist."""


class Conflict(PfdDbError):
    """The operation clashes with what is stored (a duplicate, a record in use)."""


class LeaseLost(Conflict):
    """A worker reported on a delivery it no longer holds (its lease ran out and
    another worker claimed it, or it was finished already); nothing was written."""


class InvalidInput(PfdDbError, ValueError):
    """A value given in was rejected before anything was written."""


class HostUnresolved(PfdDbError):
    """A webhook's host name did not resolve to any address (a DNS failure a worker
    may retry later); nothing was sent."""


class InvalidTransition(InvalidInput):
    """A status change that the state machine does not allow."""


class InvalidQuery(InvalidInput):
    """A search query that does not parse; ``position`` is where it went wrong."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.position = position


class PermissionDenied(PfdDbError):
    """The user or role lacks the permission the operation needs."""


class AuthenticationFailed(PfdDbError):
    """A credential (password, session token, API key, TOTP or backup code) was refused.

    Every function that checks a credential signals a refusal this way, and only
    this way (see :mod:`pfd_db.store`). ``reason`` says why ("wrong password",
    "expired", ...), for logs and audits, not for whoever presented the
    credential; the message (``str()``) is safe to show them.
    """

    def __init__(self, reason: str, message: str = "authentication failed") -> None:
        super().__init__(message)
        self.reason = reason


class ReadOnlySession(PfdDbError):
    """A write through a read-only session (``get_db_session(read_only=True)``) was
    refused; nothing was written."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"this session is read-only: {detail}; nothing was written")


class RateLimited(AuthenticationFailed):
    """Refused without checking the credential: too many recent failures; try again later.

    An :class:`AuthenticationFailed` too, so one ``except`` catches every refusal.
    """

    def __init__(self, reason: str = "rate limited") -> None:
        super().__init__(reason, "too many failed attempts; try again later")


class ConfigurationError(PfdDbError):
    """The settings are incomplete or contradictory."""


class DatabaseUnavailable(PfdDbError):
    """The database cannot be reached, or its URL is unusable."""


class ThroughPgBouncer(PfdDbError):
    """Work that cannot run through PgBouncer in transaction pooling mode was refused
    before anything was sent: migrations, or a statement whose effect would outlive
    its transaction (``SET``, ``LISTEN``, a session advisory lock, a temporary table)."""


class MigrationError(PfdDbError):
    """The schema cannot be moved to the requested revision as things stand."""


class UnversionedDatabase(MigrationError):
    """The database holds pfd-db tables but no migration history (see ``migrate --adopt``)."""


class SchemaDrift(MigrationError):
    """The live schema differs from the models; ``differences`` says how."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences
