"""Tags on experiments and users' saved searches."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    CheckConstraint,
    Connection,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column, object_session, relationship
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from pfd_db.models.base import Base, IndexedTimestamps
from pfd_db.models.ml import Experiment
from pfd_db.types import UTCDateTime

if TYPE_CHECKING:
    from pfd_db.models.auth import User

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


# Links added or removed through the ORM (session.add / session.delete, and the
# delete cascade of an experiment or tag) keep usage_count exact too; the store
# itself writes links with Core statements and counts them there.


def _shift_usage(connection: Connection, link: ExperimentTag, change: int) -> None:
    connection.execute(
        update(Tag).where(Tag.id == link.tag_id).values(usage_count=Tag.usage_count + change)
    )
    session = object_session(link)
    tag = session.identity_map.get(identity_key(Tag, link.tag_id)) if session else None
    if tag is not None and "usage_count" in tag.__dict__:
        set_committed_value(tag, "usage_count", tag.usage_count + change)


@event.listens_for(ExperimentTag, "after_insert")
def _count_added_link(
    _mapper: Mapper[ExperimentTag], connection: Connection, link: ExperimentTag
) -> None:
    _shift_usage(connection, link, +1)


@event.listens_for(ExperimentTag, "after_delete")
def _count_removed_link(
    _mapper: Mapper[ExperimentTag], connection: Connection, link: ExperimentTag
) -> None:
    _shift_usage(connection, link, -1)


@event.listens_for(Experiment, "before_delete")
def _uncount_links_left_to_the_cascade(
    _mapper: Mapper[Experiment], connection: Connection, experiment: Experiment
) -> None:
    # Links the ORM did not load (and so did not delete itself) go with the
    # database's ON DELETE CASCADE: count them out first.
    of_experiment = ExperimentTag.experiment_id == experiment.id
    lost = (
        select(func.count())
        .select_from(ExperimentTag)
        .where(ExperimentTag.tag_id == Tag.id, of_experiment)
        .scalar_subquery()
    )
    connection.execute(
        update(Tag)
        .where(Tag.id.in_(select(ExperimentTag.tag_id).where(of_experiment)))
        .values(usage_count=Tag.usage_count - lost)
    )
