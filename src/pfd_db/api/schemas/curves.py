"""Request and response models of the curve routes (``/api/v1/experiments/{id}/epochs``
and ``/curve``).

An epoch row is a ``TypedDict``, not a model: pydantic checks it and hands over a
plain dict, which goes to :func:`pfd_db.store.ml.curves.log_epochs` as it is (no
object per row on the logging path).
"""

from __future__ import annotations

from typing import Annotated, NotRequired

from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from pfd_db.api.schemas.common import ApiModel
from pfd_db.store.ml.curves import EPOCH_BATCH, PATH_MAX
from pfd_db.values import INT32_MAX

EPOCHS_PER_REQUEST = 10 * EPOCH_BATCH  # 25 000 rows: well inside the body limit


class EpochRow(TypedDict):
    """One epoch of a curve: the four fixed metrics, optional ones, and any other
    metrics by name (``{"f1": 0.81}``). Finite numbers only."""

    __pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)  # type: ignore[misc]

    epoch: Annotated[int, Field(ge=0, le=INT32_MAX)]
    train_loss: float
    val_loss: float
    train_accuracy: float
    val_accuracy: float
    learning_rate: NotRequired[float | None]
    duration_seconds: NotRequired[float | None]
    checkpoint_path: NotRequired[Annotated[str, Field(max_length=PATH_MAX)] | None]
    metrics: NotRequired[dict[str, float] | None]


class EpochBatch(ApiModel):
    """Epochs to log; an epoch logged again is replaced (sending a batch twice
    changes nothing)."""

    epochs: Annotated[list[EpochRow], Field(max_length=EPOCHS_PER_REQUEST)]


class Written(ApiModel):
    """How many epochs were written."""

    written: int


Curve = dict[str, list[float | int | None]]
"""Columns of a curve: ``epoch``, then one list per metric, one value per epoch."""
