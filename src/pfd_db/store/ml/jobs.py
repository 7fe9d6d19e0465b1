"""Background data jobs: dataset generations and imports, with their progress.

A job goes pending -> running -> completed | failed | cancelled, or pending ->
cancelled; its progress (0-100) only moves forward. Every function takes the job
object, or its id with ``kind=`` naming the model (``DatasetGeneration`` or
``DatasetImport``): an id alone does not say which. Every change is one
conditional UPDATE (:mod:`pfd_db.store.status`), so workers racing on one job
can neither skip a step nor move its progress back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, InvalidTransition
from pfd_db.models import DatasetGeneration, DatasetImport, JobStatus
from pfd_db.store.status import describe, move_status, reread, update_if
from pfd_db.store.validation import (
    require_count,
    require_non_negative,
    require_object,
    require_text,
)
from pfd_db.store.writes import load_one_of

Job = TypeVar("Job", DatasetGeneration, DatasetImport)
KINDS = (DatasetGeneration, DatasetImport)  # an id alone does not say which: kind= names it

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


def _load(session: Session, job: Job | int, kind: type[Job] | None) -> Job:
    return cast(Job, load_one_of(session, KINDS, job, kind, "job"))


def _move(session: Session, job: Job, status: JobStatus, **values: Any) -> Job:
    return move_status(session, job, status, ALLOWED, **values)


def start(session: Session, job: Job | int, *, kind: type[Job] | None = None) -> Job:
    """Mark the job running (see :mod:`pfd_db.store.status`: of several workers
    starting one pending job, exactly one succeeds; the others get
    :class:`InvalidTransition`)."""
    return _move(session, _load(session, job, kind), JobStatus.RUNNING)


def update_progress(
    session: Session, job: Job | int, progress: int, *, kind: type[Job] | None = None
) -> Job:
    """Record ``progress`` (0-100) of a running job; it never goes backwards.

    One conditional UPDATE (``... WHERE status = 'running' AND progress <=
    :progress``), so of workers reporting at once the highest report stays,
    whatever their order. :class:`InvalidInput` if the stored progress is
    already higher; :class:`InvalidTransition` naming the status if the job is
    not running; either way ``job`` is read again and nothing is written.
    """
    job = _load(session, job, kind)
    progress = require_count(progress, "progress", 0, 100)
    model = type(job)
    running_and_not_ahead = (model.status == JobStatus.RUNNING, model.progress <= progress)
    if update_if(session, job, *running_and_not_ahead, progress=progress):
        return job
    stored = reread(session, job)
    if stored.status is not JobStatus.RUNNING:
        raise InvalidTransition(f"{describe(job)} is {stored.status}, not running")
    raise InvalidInput(f"progress cannot go backwards (from {stored.progress} to {progress})")


def complete(
    session: Session,
    job: Job | int,
    *,
    duration_seconds: float,
    output_path: str | None = None,
    kind: type[Job] | None = None,
    **counts: int,
) -> Job:
    """Mark the job completed at 100 % with its duration, output and counts
    (``num_signals``/``num_faults`` for generations, ``num_signals``/``num_files``
    for imports), all in the statement that moves its status."""
    job = _load(session, job, kind)
    unknown = set(counts) - COUNTS[type(job)]
    if unknown:
        raise InvalidInput(f"unknown counts for {type(job).__name__}: {sorted(unknown)}")
    results: dict[str, Any] = {name: require_count(v, name) for name, v in counts.items()}
    results["duration_seconds"] = require_non_negative(duration_seconds, "duration_seconds")
    if output_path is not None:
        results["output_path"] = require_text(output_path, "output_path", 500)
    return _move(session, job, JobStatus.COMPLETED, progress=100, **results)


def fail(
    session: Session, job: Job | int, error_message: str, *, kind: type[Job] | None = None
) -> Job:
    """Mark the job failed with ``error_message``."""
    job = _load(session, job, kind)
    message = require_text(error_message, "error_message", 100_000)
    return _move(session, job, JobStatus.FAILED, error_message=message)


def cancel(session: Session, job: Job | int, *, kind: type[Job] | None = None) -> Job:
    """Cancel a pending or running job."""
    return _move(session, _load(session, job, kind), JobStatus.CANCELLED)
