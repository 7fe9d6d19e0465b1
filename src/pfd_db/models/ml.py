"""Core ML: datasets and their signals, experiments and their training curves,
hyper-parameter campaigns and explanations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Computed,
    Dialect,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    column,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from pfd_db.models.base import Base, IndexedTimestamps, Timestamps, enum_column
from pfd_db.models.enums import ExperimentStatus, HPOMethod
from pfd_db.models.fulltext import FTS_COLUMNS, attach_sqlite_fts, search_document
from pfd_db.types import BigID, JSONDoc, SearchDocument

if TYPE_CHECKING:
    from pfd_db.models.nas import NASCampaign
    from pfd_db.models.search import ExperimentTag


def _status_column() -> Mapped[ExperimentStatus]:
    return mapped_column(
        enum_column(ExperimentStatus, "status"),
        default=ExperimentStatus.PENDING,
        server_default=ExperimentStatus.PENDING.value,
        index=True,
    )


class Dataset(IndexedTimestamps, Base):
    __tablename__ = "datasets"
    __repr_attrs__ = ("name",)

    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(1000))
    num_signals: Mapped[int]
    fault_types: Mapped[list[str]] = mapped_column(JSONDoc)
    severity_levels: Mapped[list[str]] = mapped_column(JSONDoc)
    file_path: Mapped[str] = mapped_column(String(500))
    meta_data: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )

    experiments: Mapped[list[Experiment]] = relationship(
        back_populates="dataset", passive_deletes="all"
    )
    signals: WriteOnlyMapped[Signal] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )
    nas_campaigns: Mapped[list[NASCampaign]] = relationship(
        back_populates="dataset", passive_deletes="all"
    )


class Signal(Timestamps, Base):
    __tablename__ = "signals"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    signal_id: Mapped[str] = mapped_column(String(100), index=True)
    fault_class: Mapped[str] = mapped_column(String(50), index=True)
    severity: Mapped[str | None] = mapped_column(String(50))
    file_path: Mapped[str | None] = mapped_column(String(500))
    rms: Mapped[float | None]
    kurtosis: Mapped[float | None]
    dominant_frequency: Mapped[float | None]

    dataset: Mapped[Dataset] = relationship(back_populates="signals")


class Experiment(IndexedTimestamps, Base):
    __tablename__ = "experiments"
    __repr_attrs__ = ("name", "status")
    __table_args__ = (
        Index("ix_experiments_search_vector", "search_vector", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )

    name: Mapped[str] = mapped_column(String(255), unique=True)
    model_type: Mapped[str] = mapped_column(String(50), index=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[ExperimentStatus] = _status_column()
    config: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    hyperparameters: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    best_epoch: Mapped[int | None]
    total_epochs: Mapped[int | None]
    duration_seconds: Mapped[float | None]
    model_path: Mapped[str | None] = mapped_column(String(500))
    onnx_path: Mapped[str | None] = mapped_column(String(500))
    results_dir: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text)
    search_vector: Mapped[Any] = mapped_column(
        SearchDocument,
        Computed(search_document(*(column(c) for c in FTS_COLUMNS)), persisted=True),
        deferred=True,
        nullable=True,
    )
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    hpo_campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("hpo_campaigns.id", ondelete="SET NULL"), index=True
    )

    dataset: Mapped[Dataset] = relationship(back_populates="experiments")
    training_runs: Mapped[list[TrainingRun]] = relationship(
        back_populates="experiment",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TrainingRun.epoch",
    )
    experiment_tags: Mapped[list[ExperimentTag]] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", passive_deletes=True
    )


attach_sqlite_fts(Experiment.__table__)


class EpochMetrics(TypeDecorator[dict[str, float]]):
    """An epoch's extra metrics: a JSON object of numbers (JSONB on PostgreSQL),
    None stored as SQL NULL, every value read back as a float. (PostgreSQL keeps
    JSON numbers as decimals and writes 1e+20 back as 100000000000000000000,
    which would come back as an int.)"""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_result_value(
        self, value: dict[str, Any] | None, dialect: Dialect
    ) -> dict[str, float] | None:
        if value is None:
            return None
        return {name: float(number) for name, number in value.items()}


class TrainingRun(IndexedTimestamps, Base):
    __tablename__ = "training_runs"
    __table_args__ = (
        Index("ix_training_runs_experiment_epoch", "experiment_id", "epoch", unique=True),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    epoch: Mapped[int]
    train_loss: Mapped[float]
    val_loss: Mapped[float]
    train_accuracy: Mapped[float]
    val_accuracy: Mapped[float]
    learning_rate: Mapped[float | None]
    duration_seconds: Mapped[float | None]
    checkpoint_path: Mapped[str | None] = mapped_column(String(500))
    # Any other metric of the epoch: finite numbers keyed by name ({"f1": 0.81}).
    metrics: Mapped[dict[str, float] | None] = mapped_column(EpochMetrics)

    experiment: Mapped[Experiment] = relationship(back_populates="training_runs")


class HPOCampaign(IndexedTimestamps, Base):
    __tablename__ = "hpo_campaigns"

    name: Mapped[str] = mapped_column(String(255), unique=True)
    method: Mapped[HPOMethod] = mapped_column(enum_column(HPOMethod, "method"))
    status: Mapped[ExperimentStatus] = _status_column()
    base_model_type: Mapped[str] = mapped_column(String(50))
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), index=True
    )
    search_space: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    budget: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    trials_completed: Mapped[int] = mapped_column(default=0, server_default="0")
    trials_total: Mapped[int]
    best_experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="SET NULL", use_alter=True), index=True
    )
    best_accuracy: Mapped[float | None]
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )


class Explanation(Timestamps, Base):
    __tablename__ = "explanations"
    __table_args__ = (UniqueConstraint("experiment_id", "signal_id", "method"),)

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    signal_id: Mapped[str] = mapped_column(String(100), index=True)
    method: Mapped[str] = mapped_column(String(50))
    explanation_data: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    file_path: Mapped[str | None] = mapped_column(String(500))
