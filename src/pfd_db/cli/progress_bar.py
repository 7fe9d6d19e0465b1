"""The terminal's :class:`~pfd_db.progress.Progress`: a Rich progress bar on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pfd_db.cli.output import make_console

if TYPE_CHECKING:
    from pfd_db.progress import Progress


@contextmanager
def progress_bar(what: str) -> Iterator[Progress]:
    """A progress bar on stderr, shown only on a terminal (off one it would leave a
    blank line), and the :class:`~pfd_db.progress.Progress` that moves it."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar_console = make_console(stderr=True)
    with Bar(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=bar_console,
        transient=True,
        disable=not bar_console.is_terminal,
    ) as bar:
        task = bar.add_task(what, total=None)

        def tick(current: str, done: int, total: int, /) -> None:
            bar.update(task, description=f"{what}: {current}", completed=done, total=total)

        yield tick
