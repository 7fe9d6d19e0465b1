"""Data jobs over HTTP: dataset generations and imports, and their progress
(``/api/v1/jobs/{kind}``, kind ``generations`` or ``imports``).

Jobs have no owner: any caller with read access sees every one. Workers holding
a key with write scope start them, report progress, complete, fail or cancel
them; each change is the store's one conditional UPDATE (:mod:`pfd_db.store.ml.jobs`),
so racing workers cannot skip a step or move progress back (422 naming why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from pfd_db.api.access import Caller, read_access, write_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import Cursor, Limit, Page, encode_cursor
from pfd_db.api.routes.campaigns import cursor_number
from pfd_db.api.routes.experiments import FOUND, RowId
from pfd_db.api.routes.listing import naming
from pfd_db.api.schemas.common import PROBLEM_RESPONSES
from pfd_db.api.schemas.jobs import JobComplete, JobFail, JobKind, JobOut, JobProgress
from pfd_db.errors import NotFound
from pfd_db.models import DatasetGeneration, DatasetImport
from pfd_db.store.ml import jobs

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

Reader = Annotated[Caller, Depends(read_access)]
Writer = Annotated[Caller, Depends(write_access)]
Job = Any  # a DatasetGeneration or a DatasetImport (the store types them by a TypeVar)
MODELS: dict[JobKind, type[DatasetGeneration] | type[DatasetImport]] = {
    JobKind.GENERATIONS: DatasetGeneration,
    JobKind.IMPORTS: DatasetImport,
}


def _out(kind: JobKind, job: Job) -> JobOut:
    values = {name: getattr(job, name) for name in JobOut.model_fields if hasattr(job, name)}
    return JobOut.model_validate({**values, "kind": kind})


def _job(session: Session, kind: JobKind, job_id: int) -> Job:
    found = session.get(MODELS[kind], job_id)
    if found is None:
        raise NotFound(f"no {kind.value[:-1]} job with id {job_id}")
    return found


@router.get("/{kind}", response_model=Page[JobOut], responses=PROBLEM_RESPONSES)
def list_jobs(
    kind: JobKind, caller: Reader, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[JobOut]:
    """Every job of this kind, newest first (keyset on the id)."""
    model = MODELS[kind]
    before = cursor_number(cursor, 1)
    query = select(model)
    if before is not None:
        query = query.where(model.id < before)
    with read_session(request) as session:
        rows = list(session.scalars(query.order_by(model.id.desc()).limit(limit + 1)))
        more = len(rows) > limit
        items = [_out(kind, row) for row in rows[:limit]]
    return Page[JobOut](items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


@router.get("/{kind}/{job_id}", response_model=JobOut, responses=FOUND)
def get_job(kind: JobKind, job_id: RowId, caller: Reader, request: Request) -> JobOut:
    """One job, with its status and progress."""
    with read_session(request) as session:
        return _out(kind, _job(session, kind, job_id))


def _change(
    request: Request, kind: JobKind, job_id: int, change: Callable[[Session, Job], Any]
) -> JobOut:
    with write_session(request) as session, naming("progress", "error_message", "output_path"):
        job = _job(session, kind, job_id)
        change(session, job)
        return _out(kind, job)


@router.post("/{kind}/{job_id}/start", response_model=JobOut, responses=FOUND)
def start_job(kind: JobKind, job_id: RowId, caller: Writer, request: Request) -> JobOut:
    """pending → running (of workers starting one job, exactly one succeeds; the
    others get 422)."""
    return _change(request, kind, job_id, jobs.start)


@router.post("/{kind}/{job_id}/progress", response_model=JobOut, responses=FOUND)
def report_progress(
    kind: JobKind, job_id: RowId, body: JobProgress, caller: Writer, request: Request
) -> JobOut:
    """Record the progress of a running job (422 if it would go backwards or the
    job is not running)."""

    def progress(session: Session, job: Job) -> Job:
        return jobs.update_progress(session, job, body.progress)

    return _change(request, kind, job_id, progress)


@router.post("/{kind}/{job_id}/complete", response_model=JobOut, responses=FOUND)
def complete_job(
    kind: JobKind, job_id: RowId, body: JobComplete, caller: Writer, request: Request
) -> JobOut:
    """running → completed at 100 %, with its duration, output and counts (422 for a
    count the kind does not have)."""
    counts = body.model_dump(exclude_none=True, include={"num_signals", "num_faults", "num_files"})

    def complete(session: Session, job: Job) -> Job:
        return jobs.complete(
            session,
            job,
            duration_seconds=body.duration_seconds,
            output_path=body.output_path,
            **counts,
        )

    return _change(request, kind, job_id, complete)


@router.post("/{kind}/{job_id}/fail", response_model=JobOut, responses=FOUND)
def fail_job(
    kind: JobKind, job_id: RowId, body: JobFail, caller: Writer, request: Request
) -> JobOut:
    """running → failed, with the error message."""
    return _change(
        request, kind, job_id, lambda session, job: jobs.fail(session, job, body.error_message)
    )


@router.post("/{kind}/{job_id}/cancel", response_model=JobOut, responses=FOUND)
def cancel_job(kind: JobKind, job_id: RowId, caller: Writer, request: Request) -> JobOut:
    """pending or running → cancelled."""
    return _change(request, kind, job_id, jobs.cancel)
