"""Datasets over HTTP: list, read, register (``/api/v1/datasets``).

A dataset has an owner (``created_by``), or none (shared data such as the seeded
Default dataset, or one imported): a caller sees its own and the shared ones, an
admin every one (:func:`pfd_db.api.routes.experiments.visible_dataset`).
Another user's dataset is answered as unknown (404).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy import or_, select

from pfd_db.api.access import Caller, read_access, write_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import BadCursor, Cursor, Limit, Page, decode_cursor, encode_cursor
from pfd_db.api.routes.experiments import FOUND, UNIQUE, RowId, visible_dataset
from pfd_db.api.routes.listing import naming
from pfd_db.api.schemas.common import PROBLEM_RESPONSES
from pfd_db.api.schemas.datasets import DatasetCreate, DatasetOut
from pfd_db.errors import InvalidInput
from pfd_db.models import Dataset
from pfd_db.store.ml import datasets
from pfd_db.store.validation import require_str

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


@router.get("", response_model=Page[DatasetOut], responses=PROBLEM_RESPONSES)
def list_datasets(
    caller: Annotated[Caller, Depends(read_access)],
    request: Request,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[DatasetOut]:
    """The datasets the caller sees, by name (keyset on the unique name)."""
    query = select(Dataset)
    if not caller.is_admin:
        query = query.where(or_(Dataset.created_by.is_(None), Dataset.created_by == caller.user_id))
    if cursor is not None:
        query = query.where(Dataset.name > _name_after(cursor))
    with read_session(request) as session:
        rows = list(session.scalars(query.order_by(Dataset.name).limit(limit + 1)))
        more = len(rows) > limit
        items = [DatasetOut.model_validate(row) for row in rows[:limit]]
    return Page[DatasetOut](
        items=items, next_cursor=encode_cursor(items[-1].name) if more else None
    )


def _name_after(cursor: str) -> str:
    """The dataset name a cursor holds (storable text), or a 422 naming ``cursor``."""
    try:
        return require_str(decode_cursor(cursor), "cursor")
    except InvalidInput:
        raise BadCursor("cursor: not a cursor of this list") from None


@router.get("/{dataset_id}", response_model=DatasetOut, responses=FOUND)
def get_dataset(
    dataset_id: RowId, caller: Annotated[Caller, Depends(read_access)], request: Request
) -> DatasetOut:
    """One dataset (404 if unknown or another user's)."""
    with read_session(request) as session:
        return DatasetOut.model_validate(visible_dataset(session, caller, dataset_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    responses=UNIQUE,
)
def create_dataset(
    body: DatasetCreate, caller: Annotated[Caller, Depends(write_access)], request: Request
) -> DatasetOut:
    """Register a dataset owned by the caller (409 if the name is taken)."""
    with write_session(request) as session, naming(*DatasetCreate.model_fields):
        dataset = datasets.register_dataset(
            session,
            body.name,
            body.fault_types,
            body.severity_levels,
            body.file_path,
            num_signals=body.num_signals,
            description=body.description,
            meta_data=body.meta_data,
            created_by=caller.user_id,
        )
        return DatasetOut.model_validate(dataset)
