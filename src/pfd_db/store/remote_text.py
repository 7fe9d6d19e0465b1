"""The one cleaner for text that remote parties supply: addresses, user agents,
the names tried at a login, failure reasons, response bodies.

Such text is a record of what was sent, not an input to refuse: it is stored
whatever it holds. What a database cannot store is escaped, which loses nothing
(the original can be read back from the escape): a NUL becomes the four
characters ``\\x00``, a lone surrogate its ``\\udc80`` form (Python's
``backslashreplace``). Then the text is clipped to its column.
"""

from __future__ import annotations

from pfd_db.errors import InvalidInput
from pfd_db.values import text_problem


def storable(text: str | None, length: int) -> str | None:
    """``text`` with NULs and lone surrogates escaped, clipped to ``length``
    characters; None for None or ``""``."""
    if not text:
        return None
    if text_problem(text) is not None:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text[:length]


def checked(value: object, field: str, length: int) -> str | None:
    """:func:`storable` of ``value`` if it is None or a string; :class:`InvalidInput`
    naming ``field`` for anything else."""
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string (got {type(value).__name__})")
    return storable(value, length)
