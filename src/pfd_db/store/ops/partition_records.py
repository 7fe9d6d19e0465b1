"""What :mod:`pfd_db.store.ops.partitions` reports: a partition, a partitioned
table with its partitions, and a partition created."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Partition:
    """One partition of a partitioned log table."""

    table: str
    name: str
    start: datetime | None
    """The first moment it holds (None: the default partition)."""
    end: datetime | None
    """The first moment after it (None: the default partition)."""
    rows: int
    """Its rows: the statistics' live-row count unless counted exactly."""

    @property
    def is_default(self) -> bool:
        return self.start is None and self.end is None


@dataclass(frozen=True)
class PartitionedTable:
    """A partitioned log table, its partition key and its partitions, oldest first
    (the default partition last)."""

    table: str
    column: str
    partitions: tuple[Partition, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def default(self) -> Partition | None:
        return next((p for p in self.partitions if p.is_default), None)

    @property
    def monthly(self) -> list[Partition]:
        return [p for p in self.partitions if not p.is_default]


@dataclass(frozen=True)
class Created:
    """A partition :func:`ensure_partitions` created (or would create)."""

    table: str
    name: str
    start: datetime
    end: datetime
    moved: int
    """Rows moved into it from the default partition."""
