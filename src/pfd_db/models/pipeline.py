"""Data pipeline: dataset generation and import jobs run by background workers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from pfd_db.models.base import Base, Timestamps, enum_column
from pfd_db.models.enums import JobStatus
from pfd_db.types import JSONDoc


class Job(Timestamps):
    """Columns every background data job has; progress is a percentage, 0-100."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[CheckConstraint, ...]:
        return (CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),)

    name: Mapped[str] = mapped_column(String(255), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    status: Mapped[JobStatus] = mapped_column(
        enum_column(JobStatus, "status"),
        default=JobStatus.PENDING,
        server_default=JobStatus.PENDING.value,
        index=True,
    )
    num_signals: Mapped[int | None]
    output_path: Mapped[str | None] = mapped_column(String(500))
    progress: Mapped[int] = mapped_column(default=0, server_default="0")
    celery_task_id: Mapped[str | None] = mapped_column(String(255), index=True)
    duration_seconds: Mapped[float | None]
    error_message: Mapped[str | None] = mapped_column(Text)


class DatasetGeneration(Job, Base):
    __tablename__ = "dataset_generations"

    num_faults: Mapped[int | None]


class DatasetImport(Job, Base):
    __tablename__ = "dataset_imports"

    num_files: Mapped[int | None]
