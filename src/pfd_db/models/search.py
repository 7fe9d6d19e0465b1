"""Tags on experiments and users' saved searches."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pfd_db.models.base import Base, IndexedTimestamps
from pfd_db.types import UTCDateTime

if TYPE_CHECKING:
    from pfd_db.models.auth import User
    from pfd_db.models.ml import Experiment

# "#rrggbb": ltrim() strips the hex digits, leaving nothing; portable to both dialects.
HEX_COLOR_CHECK = (
    "color IS NULL OR (length(color) = 7 AND substr(color, 1, 1) = '#' "
    "AND ltrim(lower(substr(color, 2)), '0123456789abcdef') = '')"
)


class Tag(IndexedTimestamps, Base):
    __tablename__ = "tags"
    __table_args__ = (CheckConstraint(HEX_COLOR_CHECK, name="color"),)

    name: Mapped[str] = mapped_column(String(50), unique=True)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    color: Mapped[str | None] = mapped_column(String(7))
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    usage_count: Mapped[int] = mapped_column(default=0, server_default="0")

    experiment_tags: Mapped[list[ExperimentTag]] = relationship(
        back_populates="tag", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Tag id={self.id} {self.slug!r}>"


class ExperimentTag(IndexedTimestamps, Base):
    __tablename__ = "experiment_tags"
    __table_args__ = (UniqueConstraint("experiment_id", "tag_id", name="uq_experiment_tag"),)

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), index=True)
    added_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )

    experiment: Mapped[Experiment] = relationship(back_populates="experiment_tags")
    tag: Mapped[Tag] = relationship(back_populates="experiment_tags")


class SavedSearch(IndexedTimestamps, Base):
    __tablename__ = "saved_searches"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_user_saved_search_name"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    query: Mapped[str] = mapped_column(Text)
    is_pinned: Mapped[bool] = mapped_column(default=False, server_default=false(), index=True)
    usage_count: Mapped[int] = mapped_column(default=0, server_default="0")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="saved_searches")
