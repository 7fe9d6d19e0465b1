"""Background data jobs: dataset generations and imports, with their progress.

A job goes pending -> running -> completed | failed | cancelled, or pending ->
cancelled; its progress (0-100) only moves forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import DatasetGeneration, DatasetImport, JobStatus
from pfd_db.store.validation import (
    check_transition,
    require_count,
    require_object,
    require_text,
)

Job = TypeVar("Job", DatasetGeneration, DatasetImport)

ALLOWED: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
}
COUNTS = {
    DatasetGeneration: frozenset({"num_signals", "num_faults"}),
    DatasetImport: frozenset({"num_signals", "num_files"}),
}


def create_generation(
    session: Session, name: str, config: Mapping[str, Any], celery_task_id: str | None = None
) -> DatasetGeneration:
    """A pending dataset-generation job."""
    return _create(session, DatasetGeneration, name, config, celery_task_id)


def create_import(
    session: Session, name: str, config: Mapping[str, Any], celery_task_id: str | None = None
) -> DatasetImport:
    """A pending dataset-import job."""
    return _create(session, DatasetImport, name, config, celery_task_id)


def _create(
    session: Session,
    kind: type[Job],
    name: str,
    config: Mapping[str, Any],
    celery_task_id: str | None,
) -> Job:
    job = kind(
        name=require_text(name, "name", 255),
        config=require_object(config, "config"),
        celery_task_id=require_text(celery_task_id, "celery_task_id", 255)
        if celery_task_id is not None
        else None,
    )
    session.add(job)
    session.flush()
    return job


def _move(session: Session, job: Job, status: JobStatus) -> Job:
    check_transition(f"job {job.name!r}", job.status, status, ALLOWED)
    job.status = status
    session.flush()
    return job


def start(session: Session, job: Job) -> Job:
    """Mark the job running."""
    return _move(session, job, JobStatus.RUNNING)


def update_progress(session: Session, job: Job, progress: int) -> Job:
    """Record ``progress`` (0-100) of a running job; it may not go backwards."""
    require_count(progress, "progress", 0, 100)
    if job.status is not JobStatus.RUNNING:
        raise InvalidInput(f"job {job.name!r} is {job.status.value}, not running")
    if progress < job.progress:
        raise InvalidInput(f"progress cannot go backwards (from {job.progress} to {progress})")
    job.progress = progress
    session.flush()
    return job


def complete(
    session: Session,
    job: Job,
    *,
    duration_seconds: float,
    output_path: str | None = None,
    **counts: int,
) -> Job:
    """Mark the job completed at 100 % with its duration, output and counts
    (``num_signals``/``num_faults`` for generations, ``num_signals``/``num_files``
    for imports)."""
    unknown = set(counts) - COUNTS[type(job)]
    if unknown:
        raise InvalidInput(f"unknown counts for {type(job).__name__}: {sorted(unknown)}")
    if any(not isinstance(v, int) or v < 0 for v in counts.values()):
        raise InvalidInput("counts must be whole numbers >= 0")
    if duration_seconds < 0:
        raise InvalidInput("duration_seconds must be >= 0")
    _move(session, job, JobStatus.COMPLETED)
    job.progress = 100
    job.duration_seconds = duration_seconds
    if output_path is not None:
        job.output_path = require_text(output_path, "output_path", 500)
    for name, value in counts.items():
        setattr(job, name, value)
    session.flush()
    return job


def fail(session: Session, job: Job, error_message: str) -> Job:
    """Mark the job failed with ``error_message``."""
    message = require_text(error_message, "error_message", 100_000)
    _move(session, job, JobStatus.FAILED)
    job.error_message = message
    session.flush()
    return job


def cancel(session: Session, job: Job) -> Job:
    """Cancel a pending or running job."""
    return _move(session, job, JobStatus.CANCELLED)
