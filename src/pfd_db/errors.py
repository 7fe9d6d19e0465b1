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


class InvalidInput(PfdDbError, ValueError):
    """A value given in was rejected before anything was written."""


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
    """Credentials were refused; ``reason`` is for logs, not for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__("authentication failed")
        self.reason = reason


class RateLimited(PfdDbError):
    """Too many attempts in the window; try again later."""


class ConfigurationError(PfdDbError):
    """The settings are incomplete or contradictory."""


class DatabaseUnavailable(PfdDbError):
    """The database cannot be reached, or its URL is unusable."""


class MigrationError(PfdDbError):
    """The schema cannot be moved to the requested revision as things stand."""


class UnversionedDatabase(MigrationError):
    """The database holds pfd-db tables but no migration history (see ``migrate --adopt``)."""


class SchemaDrift(MigrationError):
    """The live schema differs from the models; ``differences`` says how."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences
