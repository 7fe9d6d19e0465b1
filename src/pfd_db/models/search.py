"""Tags on experiments and users' saved searches."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CheckConstraint,
    Connection,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.orm import (
    Mapped,
    Mapper,
    ORMExecuteState,
    Session,
    mapped_column,
    object_session,
    relationship,
)
from sqlalchemy.orm.unitofwork import UOWTransaction

from pfd_db.models.base import Base, IndexedTimestamps
from pfd_db.models.ml import Experiment
from pfd_db.models.tag_counts import attach_usage_count_triggers
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
    # The number of the tag's links, kept by the database (models/tag_counts.py).
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


attach_usage_count_triggers(ExperimentTag.__table__)

# The database moves usage_count (models/tag_counts.py); a session's copies of
# the tags are expired whenever it writes links or deletes experiments, by its
# unit of work or by a statement, so that they are read again when next used.

STALE_COUNTS = "pfd_db.stale_tag_counts"


def forget_usage_counts(session: Session) -> None:
    """Expire ``usage_count`` of every tag ``session`` holds."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Tag):
            session.expire(obj, ["usage_count"])


@event.listens_for(ExperimentTag, "after_insert")
@event.listens_for(ExperimentTag, "after_update")
@event.listens_for(ExperimentTag, "after_delete")
@event.listens_for(Experiment, "after_delete")
def _note_counts_moved(_mapper: Mapper[Any], _connection: Connection, row: object) -> None:
    session = object_session(row)
    if session is not None:
        session.info[STALE_COUNTS] = True


@event.listens_for(Session, "after_flush_postexec")
def _forget_counts_moved_by_the_flush(session: Session, _context: UOWTransaction) -> None:
    if session.info.pop(STALE_COUNTS, False):
        forget_usage_counts(session)


@event.listens_for(Session, "do_orm_execute")
def _forget_counts_a_statement_moves(state: ORMExecuteState) -> None:
    """Before an INSERT, UPDATE or DELETE of links, or a DELETE of experiments,
    sent through the session (after its autoflush)."""
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    classes = {mapper.class_ for mapper in state.all_mappers}
    if ExperimentTag in classes or (state.is_delete and Experiment in classes):
        forget_usage_counts(state.session)
