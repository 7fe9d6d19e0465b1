"""Experiments over HTTP: create, search, read, delete, move through their status
machine, tag (``/api/v1/experiments``).

An experiment has an owner (``created_by``): a caller sees and changes only its
own, an admin every one. Another user's experiment is answered as unknown (404),
so its existence does not leak. The curve routes are :mod:`pfd_db.api.routes.curves`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from pfd_db.api.access import Caller, read_access, write_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import BadCursor, Cursor, Limit, Page, decode_cursor, encode_cursor
from pfd_db.api.routes.listing import naming
from pfd_db.api.schemas.common import PROBLEM_RESPONSES, problem_responses
from pfd_db.api.schemas.experiments import (
    ExperimentCreate,
    ExperimentFail,
    ExperimentFinish,
    ExperimentOut,
    TagOut,
)
from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Dataset, Experiment, ExperimentStatus, Tag
from pfd_db.store.ml import experiments, search, tags
from pfd_db.store.validation import optional_str, require_str
from pfd_db.values import INT32_MAX, INT64_MAX

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])

Reader = Annotated[Caller, Depends(read_access)]
Writer = Annotated[Caller, Depends(write_access)]
SEARCH_PAGE_MAX = search.MAX_LIMIT
FOUND = {**PROBLEM_RESPONSES, **problem_responses(404)}
"""The errors of a route that names a row (404 for an unknown or hidden one)."""
UNIQUE = {**PROBLEM_RESPONSES, **problem_responses(404, 409)}
"""The errors of a route that creates a row with a unique name."""
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="a row's id")]


# --- who sees what -------------------------------------------------------------------


def visible_experiment(session: Session, caller: Caller, experiment_id: int) -> Experiment:
    """The experiment ``experiment_id`` if ``caller`` may see it (its owner, or an
    admin); :class:`NotFound` otherwise, as for an id no row has."""
    found = session.get(Experiment, experiment_id)
    if found is None or not (caller.is_admin or found.created_by == caller.user_id):
        raise NotFound(f"no experiment with id {experiment_id}")
    return found


def visible_dataset(session: Session, caller: Caller, dataset: int | str) -> Dataset:
    """The dataset named by id or name if ``caller`` may use it: its own, one with
    no owner (shared data, such as the seeded Default), or any for an admin."""
    found = (
        (session.get(Dataset, dataset) if 0 < dataset <= INT64_MAX else None)
        if isinstance(dataset, int)
        else session.scalar(select(Dataset).where(Dataset.name == require_str(dataset, "dataset")))
    )
    if found is None or not (caller.is_admin or found.created_by in (None, caller.user_id)):
        raise NotFound(f"no dataset {dataset!r}")
    return found


# --- experiments -----------------------------------------------------------------------


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExperimentOut,
    responses=UNIQUE,
)
def create_experiment(body: ExperimentCreate, caller: Writer, request: Request) -> ExperimentOut:
    """Create a pending experiment owned by the caller, on a dataset given by id or
    name (409 if the name is taken, 404 for a dataset the caller cannot see)."""
    with write_session(request) as session, naming(*ExperimentCreate.model_fields):
        dataset = visible_dataset(session, caller, body.dataset)
        experiment = experiments.create_experiment(
            session,
            body.name,
            body.model_type,
            dataset,
            body.config,
            hyperparameters=body.hyperparameters,
            notes=optional_str(body.notes, "notes"),  # the store takes any str here
            created_by=caller.user_id,
        )
        return ExperimentOut.model_validate(experiment)


@router.get("", response_model=Page[ExperimentOut], responses=PROBLEM_RESPONSES)
def list_experiments(
    caller: Reader,
    request: Request,
    limit: Limit = 100,
    cursor: Cursor = None,
    q: Annotated[str, Query(max_length=1000, description="the search language")] = "",
) -> Page[ExperimentOut]:
    """The caller's experiments (an admin's: all). Without ``q``, newest first,
    paged by keyset on (created_at, id). With ``q`` (the store's search language,
    422 naming the position for a malformed one), best match first then newest;
    the cursor then holds the position in the ranked results (at most 500 a
    page), and a page may hold fewer than ``limit`` items for a non-admin."""
    with read_session(request) as session:
        if q.strip():
            return _search_page(session, caller, q, limit, cursor)
        return _newest_page(session, caller, limit, cursor)


def _newest_page(
    session: Session, caller: Caller, limit: int, cursor: str | None
) -> Page[ExperimentOut]:
    query = select(Experiment)
    if not caller.is_admin:
        query = query.where(Experiment.created_by == caller.user_id)
    if cursor is not None:
        last_time, last_id = _time_and_id(decode_cursor(cursor))
        query = query.where(
            or_(
                Experiment.created_at < last_time,
                and_(Experiment.created_at == last_time, Experiment.id < last_id),
            )
        )
    query = query.order_by(Experiment.created_at.desc(), Experiment.id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        encode_cursor([rows[-1].created_at.isoformat(), rows[-1].id]) if more and rows else None
    )
    return Page[ExperimentOut](
        items=[ExperimentOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


def _time_and_id(value: Any) -> tuple[datetime, int]:
    try:
        moment, ident = value
        if not isinstance(ident, int) or isinstance(ident, bool) or not isinstance(moment, str):
            raise TypeError
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None or not 0 < ident <= INT64_MAX:
            raise ValueError
        return when, ident
    except (TypeError, ValueError):
        raise BadCursor("cursor: not a cursor of this list") from None


def _search_page(
    session: Session, caller: Caller, q: str, limit: int, cursor: str | None
) -> Page[ExperimentOut]:
    with naming("q"):
        require_str(q, "q")  # a NUL never reaches the database
    offset = 0
    if cursor is not None:
        offset = decode_cursor(cursor)
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= INT32_MAX:
            raise BadCursor("cursor: not a cursor of this list")
    size = min(limit, SEARCH_PAGE_MAX)
    results = search.search(session, q, size, offset)
    seen = offset + len(results.rows)
    items = [
        ExperimentOut.model_validate(hit.experiment)
        for hit in results.rows
        if caller.is_admin or hit.experiment.created_by == caller.user_id
    ]
    next_cursor = encode_cursor(seen) if results.rows and seen < results.total else None
    return Page[ExperimentOut](items=items, next_cursor=next_cursor)


@router.get("/{experiment_id}", response_model=ExperimentOut, responses=FOUND)
def get_experiment(experiment_id: RowId, caller: Reader, request: Request) -> ExperimentOut:
    """One experiment (404 if unknown or another user's)."""
    with read_session(request) as session:
        return ExperimentOut.model_validate(visible_experiment(session, caller, experiment_id))


@router.delete("/{experiment_id}", status_code=status.HTTP_204_NO_CONTENT, responses=FOUND)
def delete_experiment(experiment_id: RowId, caller: Writer, request: Request) -> Response:
    """Delete an experiment with its curve, explanations and tag links."""
    with write_session(request) as session:
        experiments.delete_experiment(session, visible_experiment(session, caller, experiment_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- status ----------------------------------------------------------------------------


def _move(
    request: Request,
    caller: Caller,
    experiment_id: RowId,
    change: Callable[[Session, Experiment], Experiment],
) -> ExperimentOut:
    with write_session(request) as session, naming("metrics", "duration_seconds"):
        experiment = change(session, visible_experiment(session, caller, experiment_id))
        return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/start", response_model=ExperimentOut, responses=FOUND)
def start(experiment_id: RowId, caller: Writer, request: Request) -> ExperimentOut:
    """pending or paused → running (422 naming the status for any other move)."""
    return _move(request, caller, experiment_id, experiments.start)


@router.post("/{experiment_id}/pause", response_model=ExperimentOut, responses=FOUND)
def pause(experiment_id: RowId, caller: Writer, request: Request) -> ExperimentOut:
    """running → paused."""
    return _move(request, caller, experiment_id, experiments.pause)


@router.post("/{experiment_id}/resume", response_model=ExperimentOut, responses=FOUND)
def resume(experiment_id: RowId, caller: Writer, request: Request) -> ExperimentOut:
    """paused → running."""
    return _move(request, caller, experiment_id, experiments.resume)


@router.post("/{experiment_id}/cancel", response_model=ExperimentOut, responses=FOUND)
def cancel(experiment_id: RowId, caller: Writer, request: Request) -> ExperimentOut:
    """pending or running → cancelled."""
    return _move(request, caller, experiment_id, experiments.cancel)


@router.post("/{experiment_id}/fail", response_model=ExperimentOut, responses=FOUND)
def fail(
    experiment_id: RowId, body: ExperimentFail, caller: Writer, request: Request
) -> ExperimentOut:
    """running → failed; the message is kept as the ``error`` entry of its metrics
    (experiments have no column of their own for it)."""

    def failed(session: Session, experiment: Experiment) -> Experiment:
        return experiments.finish(
            session, experiment, {"error": body.error_message}, status=ExperimentStatus.FAILED
        )

    return _move(request, caller, experiment_id, failed)


@router.post("/{experiment_id}/finish", response_model=ExperimentOut, responses=FOUND)
def finish(
    experiment_id: RowId, caller: Writer, request: Request, body: ExperimentFinish | None = None
) -> ExperimentOut:
    """running → completed, with final metrics (merged into the stored ones) and
    the duration; best and total epochs are read from the curve."""
    given = body or ExperimentFinish()

    def finished(session: Session, experiment: Experiment) -> Experiment:
        return experiments.finish(
            session, experiment, given.metrics, duration_seconds=given.duration_seconds
        )

    return _move(request, caller, experiment_id, finished)


# --- tags ------------------------------------------------------------------------------


TagName = Annotated[str, Path(description="a tag's name or slug")]


@contextmanager
def _tag_field() -> Iterator[None]:
    """A refused tag name is the path's ``tag`` field (the store calls it ``name``)."""
    try:
        yield
    except InvalidInput as exc:
        exc.field = "tag"  # type: ignore[attr-defined]
        raise


@router.put("/{experiment_id}/tags/{tag}", response_model=TagOut, responses=UNIQUE)
def put_tag(experiment_id: RowId, tag: TagName, caller: Writer, request: Request) -> TagOut:
    """Put the tag on the experiment, creating the tag if there is none by that name
    or slug; ``added`` is False when it was there already (nothing changes)."""
    with write_session(request) as session:
        experiment = visible_experiment(session, caller, experiment_id)
        with _tag_field():
            found = tags.get_or_create_tag(session, tag, created_by=caller.user_id)
        added = tags.tag_experiment(session, experiment, found, caller.user_id)
        return TagOut(experiment_id=experiment.id, tag=found.name, slug=found.slug, added=added)


@router.delete(
    "/{experiment_id}/tags/{tag}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=FOUND,
)
def delete_tag(experiment_id: RowId, tag: TagName, caller: Writer, request: Request) -> Response:
    """Take the tag (by name or slug) off the experiment; 204 whether or not it was
    there, 404 for an unknown experiment or tag."""
    with write_session(request) as session:
        experiment = visible_experiment(session, caller, experiment_id)
        with _tag_field():
            slug = tags.slugify(tag)
        found = session.scalar(select(Tag).where(or_(Tag.name == tag, Tag.slug == slug)).limit(1))
        if found is None:
            raise NotFound(f"no tag named {tag!r}")
        tags.untag_experiment(session, experiment, found)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
