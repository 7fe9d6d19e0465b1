"""Neural architecture search: campaigns and their trials."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pfd_db.models.base import Base, IndexedTimestamps, one_of
from pfd_db.models.enums import ExperimentStatus, NASAlgorithm
from pfd_db.types import JSONDoc

if TYPE_CHECKING:
    from pfd_db.models.ml import Dataset


class NASCampaign(IndexedTimestamps, Base):
    __tablename__ = "nas_campaigns"
    __table_args__ = (
        one_of("search_algorithm", [a.value for a in NASAlgorithm], name="search_algorithm"),
        one_of("status", [s.value for s in ExperimentStatus], name="status"),
    )

    name: Mapped[str] = mapped_column(String(200), index=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), index=True
    )
    search_algorithm: Mapped[str] = mapped_column(
        String(50), default=NASAlgorithm.RANDOM.value, server_default=NASAlgorithm.RANDOM.value
    )
    num_trials: Mapped[int] = mapped_column(default=20, server_default="20")
    max_epochs_per_trial: Mapped[int] = mapped_column(default=10, server_default="10")
    search_space_config: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    status: Mapped[str] = mapped_column(
        String(50),
        default=ExperimentStatus.PENDING.value,
        server_default=ExperimentStatus.PENDING.value,
        index=True,
    )
    best_trial_id: Mapped[int | None] = mapped_column(
        ForeignKey("nas_trials.id", ondelete="SET NULL", use_alter=True), index=True
    )
    best_accuracy: Mapped[float | None]
    task_id: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)

    dataset: Mapped[Dataset] = relationship(back_populates="nas_campaigns")
    trials: Mapped[list[NASTrial]] = relationship(
        back_populates="campaign",
        foreign_keys="NASTrial.campaign_id",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="NASTrial.trial_number",
    )


class NASTrial(IndexedTimestamps, Base):
    __tablename__ = "nas_trials"
    __table_args__ = (
        Index("ix_nas_trials_campaign_trial", "campaign_id", "trial_number", unique=True),
    )

    campaign_id: Mapped[int] = mapped_column(ForeignKey("nas_campaigns.id", ondelete="CASCADE"))
    trial_number: Mapped[int]
    architecture: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    architecture_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    validation_accuracy: Mapped[float | None]
    validation_loss: Mapped[float | None]
    training_time: Mapped[float | None]
    num_parameters: Mapped[int | None] = mapped_column(BigInteger)
    flops: Mapped[int | None] = mapped_column(BigInteger)
    model_size_mb: Mapped[float | None]
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)

    campaign: Mapped[NASCampaign] = relationship(
        back_populates="trials", foreign_keys=[campaign_id]
    )
