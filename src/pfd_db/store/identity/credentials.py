"""What every check of a credential shares (see :mod:`pfd_db.store` for the rule).

A credential that is not a string is a programming error and raises
:class:`~pfd_db.errors.InvalidInput`; a string of the wrong shape (too short, a
NUL, a stray character) is a refused credential like any other and raises
:class:`~pfd_db.errors.AuthenticationFailed`, so that what a client sends never
decides which kind of error the caller sees.
"""

from __future__ import annotations

from pfd_db.errors import InvalidInput


def presented(value: object, field: str) -> str:
    """``value`` if it is a string (its shape is for the check to judge);
    :class:`InvalidInput` naming ``field`` otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string (got {type(value).__name__})")
    return value


def optional_client_text(value: object, field: str) -> str | None:
    """``value`` if it is None or a string: an address or user agent as the client
    sent it (stored clipped and escaped, see :func:`pfd_db.store.remote_text.storable`);
    :class:`InvalidInput` naming ``field`` otherwise."""
    return None if value is None else presented(value, field)
