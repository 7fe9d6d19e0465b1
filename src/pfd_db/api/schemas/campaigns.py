"""Response models of the HPO and NAS campaign routes (``/api/v1/campaigns``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pfd_db.api.schemas.common import ApiModel
from pfd_db.api.schemas.experiments import ExperimentOut
from pfd_db.models.enums import ExperimentStatus, HPOMethod


class HPOCampaignOut(ApiModel):
    """A hyper-parameter search campaign as stored."""

    id: int
    name: str
    method: HPOMethod
    status: ExperimentStatus
    base_model_type: str
    dataset_id: int
    search_space: dict[str, Any]
    budget: dict[str, Any]
    trials_completed: int
    trials_total: int
    best_experiment_id: int | None
    best_accuracy: float | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class HPOTrialOut(ApiModel):
    """One trial of an HPO campaign: its experiment, its score, and whether it is the best."""

    experiment: ExperimentOut
    accuracy: float | None
    best: bool


class NASCampaignOut(ApiModel):
    """A neural-architecture search campaign as stored."""

    id: int
    name: str
    dataset_id: int
    search_algorithm: str
    num_trials: int
    max_epochs_per_trial: int
    search_space_config: dict[str, Any] | None
    status: ExperimentStatus
    best_trial_id: int | None
    best_accuracy: float | None
    task_id: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime


class NASTrialOut(ApiModel):
    """One architecture tried by a NAS campaign, with its results."""

    id: int
    campaign_id: int
    trial_number: int
    architecture: dict[str, Any]
    architecture_hash: str | None
    validation_accuracy: float | None
    validation_loss: float | None
    training_time: float | None
    num_parameters: int | None
    flops: int | None
    model_size_mb: float | None
    metrics: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
