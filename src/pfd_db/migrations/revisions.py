"""What a downgrade undoes: the target resolved by Alembic's ScriptDirectory, and
whether undoing each revision loses data, as the revision itself declares.

A target is what ``alembic downgrade`` takes: a revision or a unique start of one,
``-N`` (N steps below the current revision) or ``base``. Every revision script
declares ``downgrade_loses_data`` (a bool): whether its ``downgrade()`` drops a
table or a column or deletes rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alembic.script import Script
from alembic.script.revision import RangeNotAncestorError, ResolutionError, RevisionError
from alembic.util import CommandError

from pfd_db.errors import MigrationError
from pfd_db.migrations import script_directory

_STEPS_BACK = re.compile(r"-(\d+)")


@dataclass(frozen=True)
class DowngradePlan:
    """The revisions a downgrade undoes, and those of them that lose data."""

    target: str | None
    """The revision to end at; None for base (no schema)."""
    undone: list[str]
    """The revisions whose downgrade runs, newest first."""
    losing: list[str]
    """Those of them that delete data."""

    @property
    def target_name(self) -> str:
        return self.target or "base"


def plan_downgrade(current: str, wanted: str) -> DowngradePlan:
    """Which revisions a downgrade from ``current`` to ``wanted`` undoes.

    Raises :class:`MigrationError` naming the problem for a target that names no
    single revision, lies above ``current``, or is more steps back than there are.
    """
    scripts = _undone(current, wanted)
    target = scripts[-1].down_revision if scripts else current
    if target is not None and not isinstance(target, str):  # pragma: no cover - linear history
        raise MigrationError(f"revision {scripts[-1].revision} merges branches: not supported")
    undone = [script.revision for script in scripts]
    return DowngradePlan(
        target=target,
        undone=undone,
        losing=[script.revision for script in scripts if _declares_loss(script)],
    )


def downgrade_loses_data(revision: str) -> bool:
    """Whether ``revision``'s downgrade deletes data, as the revision declares."""
    try:
        script = script_directory().get_revision(revision)
    except CommandError:
        raise MigrationError(f"no revision {revision!r}: see pfd-db history") from None
    return _declares_loss(script)


def _declares_loss(script: Script) -> bool:
    """The revision's declaration; a revision that declares nothing is taken to lose
    data, so that the operator is asked."""
    declared = getattr(script.module, "downgrade_loses_data", True)
    return declared is not False


def _undone(current: str, wanted: str) -> list[Script]:
    """The scripts from ``current`` down to just above ``wanted``, newest first."""
    directory = script_directory()
    try:
        if not wanted.strip():
            raise ResolutionError("empty revision", wanted)
        return list(directory.iterate_revisions(current, wanted, select_for_downgrade=True))
    except RangeNotAncestorError:
        above = _name(wanted)
        raise MigrationError(
            f"{above} is above the current revision {current}: run pfd-db migrate --to {above}"
        ) from None
    except RevisionError:  # ResolutionError, and -N below base, are RevisionErrors
        steps = _STEPS_BACK.fullmatch(wanted)
        if steps is not None:
            below = len(list(directory.iterate_revisions(current, "base")))
            raise MigrationError(
                f"cannot go {steps[1]} steps back from {current}: it is {below} above base"
            ) from None
        known = ", ".join(reversed([s.revision for s in directory.walk_revisions()]))
        raise MigrationError(
            f"no single revision {wanted!r} (known: {known}; or -N, or base): see pfd-db history"
        ) from None


def _name(wanted: str) -> str:
    """The whole revision ``wanted`` names, or ``wanted`` itself when it names none."""
    try:
        return script_directory().get_revision(wanted).revision
    except CommandError:
        return wanted
