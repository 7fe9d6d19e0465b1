"""Request and response models of the experiment routes (``/api/v1/experiments``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from pfd_db.api.schemas.common import ApiModel
from pfd_db.models.enums import ExperimentStatus


class ExperimentCreate(ApiModel):
    """A new experiment: ``dataset`` is the dataset's id or its name."""

    name: str = Field(min_length=1, max_length=255)
    model_type: str = Field(min_length=1, max_length=50)
    dataset: int | str = Field(description="the dataset's id, or its name")
    config: dict[str, Any]
    hyperparameters: dict[str, Any] | None = None
    notes: str | None = None


class ExperimentFinish(ApiModel):
    """The end of a run: final metrics merged into the stored ones, and how long it took."""

    metrics: dict[str, Any] | None = None
    duration_seconds: float | None = Field(default=None, ge=0)


class ExperimentFail(ApiModel):
    """A failed run: what went wrong (stored as the ``error`` entry of its metrics)."""

    error_message: str = Field(min_length=1, max_length=100_000)


class ExperimentOut(ApiModel):
    """An experiment as stored."""

    id: int
    name: str
    model_type: str
    dataset_id: int
    status: ExperimentStatus
    config: dict[str, Any]
    hyperparameters: dict[str, Any] | None
    metrics: dict[str, Any] | None
    best_epoch: int | None
    total_epochs: int | None
    duration_seconds: float | None
    notes: str | None
    created_by: int | None
    hpo_campaign_id: int | None
    created_at: datetime
    updated_at: datetime


class TagOut(ApiModel):
    """A tag put on an experiment: whether it was added now (False: it was there)."""

    experiment_id: int
    tag: str
    slug: str
    added: bool
