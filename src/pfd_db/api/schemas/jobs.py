"""Request and response models of the data-job routes (``/api/v1/jobs``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from pfd_db.api.schemas.common import ApiModel
from pfd_db.models.enums import JobStatus

COUNT_MAX = 2**31 - 1


class JobKind(StrEnum):
    """Which jobs: dataset generations or dataset imports."""

    GENERATIONS = "generations"
    IMPORTS = "imports"


class JobOut(ApiModel):
    """A data job as stored; ``num_faults`` is a generation's, ``num_files`` an import's."""

    id: int
    kind: JobKind
    name: str
    config: dict[str, Any]
    status: JobStatus
    progress: int
    num_signals: int | None
    num_faults: int | None = None
    num_files: int | None = None
    output_path: str | None
    celery_task_id: str | None
    duration_seconds: float | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime


class JobProgress(ApiModel):
    """Progress of a running job, 0-100; it never goes backwards."""

    progress: int = Field(ge=0, le=100)


class JobComplete(ApiModel):
    """A job's results: its duration, output, and counts (``num_faults`` only for a
    generation, ``num_files`` only for an import)."""

    duration_seconds: float = Field(ge=0)
    output_path: str | None = Field(default=None, min_length=1, max_length=500)
    num_signals: int | None = Field(default=None, ge=0, le=COUNT_MAX)
    num_faults: int | None = Field(default=None, ge=0, le=COUNT_MAX)
    num_files: int | None = Field(default=None, ge=0, le=COUNT_MAX)


class JobFail(ApiModel):
    """What made the job fail."""

    error_message: str = Field(min_length=1, max_length=100_000)
