"""Training curves over HTTP: log epochs in batches, read the curve as columns or
CSV (``/api/v1/experiments/{id}/epochs`` and ``/curve``).

Visibility is the experiment's (:func:`pfd_db.api.routes.experiments.visible_experiment`):
its owner, or an admin. Logging is the fast path a remote training job takes: the
body is parsed and checked once (rows stay plain dicts), the experiment is read
once (for its owner), and one :func:`~pfd_db.store.ml.curves.log_epochs` call
writes the batch; nothing is read back.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from pfd_db.api.access import Caller, read_access, write_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.routes.experiments import FOUND, RowId, visible_experiment
from pfd_db.api.routes.listing import naming
from pfd_db.api.schemas.curves import Curve, EpochBatch, Written
from pfd_db.errors import InvalidInput
from pfd_db.store.ml import curves

router = APIRouter(prefix="/api/v1/experiments", tags=["curves"])

CSV_TYPE = "text/csv"
MetricNames = Annotated[
    str | None,
    Query(
        max_length=5_000,
        description="comma-separated metric names (fixed columns or extra metrics); "
        "all of them when absent",
    ),
]


@router.post("/{experiment_id}/epochs", response_model=Written, responses=FOUND)
def log_epochs(
    experiment_id: RowId,
    body: EpochBatch,
    caller: Annotated[Caller, Depends(write_access)],
    request: Request,
) -> Written:
    """Log a batch of epochs (the rows of ``log_epochs``, extra metrics included).
    An epoch logged again is replaced, so sending the same batch twice changes
    nothing; an epoch repeated within one batch is a 422 naming the row."""
    with write_session(request) as session:
        experiment = visible_experiment(session, caller, experiment_id)
        try:
            written = curves.log_epochs(session, experiment, body.epochs)
        except InvalidInput as exc:  # "row 3: epoch 2 repeats row 1": the batch's field
            exc.field = "epochs"  # type: ignore[attr-defined]
            raise
    return Written(written=written)


@router.get(
    "/{experiment_id}/curve",
    response_model=Curve,
    responses={
        **FOUND,
        200: {
            "description": "the curve's columns (JSON), or a CSV table with Accept: text/csv",
            "content": {CSV_TYPE: {"schema": {"type": "string"}}},
        },
    },
)
def read_curve(
    experiment_id: RowId,
    caller: Annotated[Caller, Depends(read_access)],
    request: Request,
    metrics: MetricNames = None,
) -> Response | Curve:
    """The curve as columns: ``{"epoch": [...], "val_loss": [...], ...}``, one value per
    epoch in epoch order, null where an epoch has none (``curve_columns``). With
    ``Accept: text/csv``: a header row, then one row per epoch (empty cells for
    null)."""
    wanted = None if metrics is None else [name.strip() for name in metrics.split(",")]
    with read_session(request) as session, naming("metrics"):
        experiment = visible_experiment(session, caller, experiment_id)
        columns = curves.curve_columns(session, experiment, wanted)
    if CSV_TYPE in request.headers.get("accept", ""):
        return Response(_csv(columns), media_type=CSV_TYPE)
    return columns


def _csv(columns: Curve) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    return out.getvalue()
