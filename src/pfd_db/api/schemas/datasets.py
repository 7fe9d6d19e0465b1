"""Request and response models of the dataset routes (``/api/v1/datasets``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from pfd_db.api.schemas.common import ApiModel


class DatasetCreate(ApiModel):
    """A new dataset: fault types and severity levels are non-empty lists of
    distinct lowercase names (``oil_whirl``)."""

    name: str = Field(min_length=1, max_length=255)
    fault_types: list[str] = Field(min_length=1)
    severity_levels: list[str] = Field(min_length=1)
    file_path: str = Field(min_length=1, max_length=500)
    num_signals: int = Field(default=0, ge=0, le=2**31 - 1)
    description: str | None = Field(default=None, max_length=1000)
    meta_data: dict[str, Any] | None = None


class DatasetOut(ApiModel):
    """A dataset as stored."""

    id: int
    name: str
    description: str | None
    num_signals: int
    fault_types: list[str]
    severity_levels: list[str]
    file_path: str
    meta_data: dict[str, Any] | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime
