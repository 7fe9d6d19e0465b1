"""Progress: how long-running work says how far it is, without knowing who listens."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Told ``(what, done, total)`` as work goes on: the step at hand (a table, a
    batch), units done so far and units in all (rows, pages, tables, steps)."""

    def __call__(self, what: str, done: int, total: int, /) -> None: ...


def no_progress(what: str, done: int, total: int, /) -> None:
    """A :class:`Progress` that shows nothing."""
