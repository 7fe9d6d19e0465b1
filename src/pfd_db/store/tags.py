"""Tags on experiments: create them, attach and detach them, suggest them.

``tags.usage_count`` is a stored count of a tag's ``experiment_tags`` rows. It
stays exact under any number of concurrent writers because it only ever moves
by the number of link rows a statement really inserted or deleted (counted with
RETURNING), through ``UPDATE tags SET usage_count = usage_count + :n``; it is
never read, changed in Python and written back.

On PostgreSQL (READ COMMITTED) concurrent writers wait for each other only
on link rows, always taken in one order (inserts by experiment id, deletes
after ``SELECT ... ORDER BY id FOR UPDATE``), and each touches the tag rows
last, in id order: writers of the same links queue instead of deadlocking.
(Several of these calls in one transaction can still deadlock with another
such transaction; PostgreSQL then aborts one, to be retried.) On SQLite,
``BEGIN IMMEDIATE`` lets one writer in at a time.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    case,
    cast,
    delete,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from pfd_db.errors import InvalidInput, NotFound
from pfd_db.models import Experiment, ExperimentTag, Tag, User
from pfd_db.store.validation import require_count, require_text
from pfd_db.store.writes import id_of, insert_ignoring_conflicts

NAME_MAX = 50
SLUG_MAX = 50
NOT_SLUG = re.compile(r"[^a-z0-9]+")
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
BATCH = 500  # ids per statement, far below every dialect's bound-parameter limit


# --- tags ----------------------------------------------------------------------


def slugify(name: str) -> str:
    """``name`` lowercased, accents dropped, each run of other characters than
    a-z and 0-9 turned into one ``-``, with none at either end."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return NOT_SLUG.sub("-", ascii_name.lower()).strip("-")[:SLUG_MAX].rstrip("-")


def get_or_create_tag(
    session: Session, name: str, color: str | None = None, created_by: User | int | None = None
) -> Tag:
    """The tag whose slug is ``name``'s slug (or, failing that, whose name is
    ``name``), created if there is none.

    ``color`` (``#rrggbb``) and ``created_by`` apply only to a new tag. Two
    callers creating the same tag at once both get the one row: the insert
    skips a conflicting row instead of failing.
    """
    name = require_text(name, "name", NAME_MAX)
    slug = _valid_slug(name)
    color = _valid_color(color)
    same_tag = (
        select(Tag)
        .where((Tag.slug == slug) | (Tag.name == name))
        .order_by(case((Tag.slug == slug, 0), else_=1))
        .limit(1)
    )
    existing = session.scalars(same_tag).one_or_none()
    if existing is not None:
        return existing
    session.execute(
        insert_ignoring_conflicts(session, Tag).values(
            name=name, slug=slug, color=color, created_by=id_of(session, created_by)
        )
    )
    return session.scalars(same_tag).one()  # ours, or a concurrent caller's


def _valid_slug(name: str) -> str:
    slug = slugify(name)
    if not slug:
        raise InvalidInput(f"name {name!r} has no letters or digits to make a slug from")
    return slug


def _valid_color(color: str | None) -> str | None:
    if color is None:
        return None
    if not isinstance(color, str) or not HEX_COLOR.fullmatch(color):
        raise InvalidInput(f"color must look like #rrggbb (got {color!r})")
    return color.lower()


def popular_tags(session: Session, limit: int = 20) -> list[Tag]:
    """The ``limit`` most used tags, most used first, then by name."""
    return list(session.scalars(_most_used(limit)))


def suggest_tags(session: Session, prefix: str, limit: int = 10) -> list[Tag]:
    """Tags whose name or slug starts with ``prefix`` (any case; ``%`` and ``_``
    match only themselves), most used first. An empty prefix suggests the most
    used tags."""
    if not isinstance(prefix, str):
        raise InvalidInput("prefix must be a string")
    text = prefix.strip()
    query = _most_used(limit)
    if text:
        query = query.where(
            Tag.name.istartswith(text, autoescape=True)
            | Tag.slug.istartswith(text, autoescape=True)
        )
    return list(session.scalars(query))


def _most_used(limit: int) -> Select[Tag]:
    require_count(limit, "limit", minimum=1)
    return select(Tag).order_by(Tag.usage_count.desc(), Tag.name).limit(limit)


# --- links -----------------------------------------------------------------------


def tag_experiment(
    session: Session, experiment: Experiment, tag: Tag, added_by: User | int | None = None
) -> bool:
    """Put ``tag`` on ``experiment``; True if it was not there yet."""
    return bulk_tag(session, [experiment], tag, added_by) == 1


def untag_experiment(session: Session, experiment: Experiment, tag: Tag) -> bool:
    """Take ``tag`` off ``experiment``; True if it was there."""
    return bulk_untag(session, [experiment], tag) == 1


def bulk_tag(
    session: Session,
    experiments: Iterable[Experiment | int],
    tag: Tag,
    added_by: User | int | None = None,
) -> int:
    """Put ``tag`` on each of ``experiments`` (objects or ids); returns how many
    did not have it yet. Experiments that no longer exist are skipped."""
    ids = _experiment_ids(session, experiments)
    if not ids:
        return 0
    adder = id_of(session, added_by)
    added = sum(_link_batch(session, batch, tag.id, adder) for batch in _batches(ids))
    if not added:
        _require_tag(session, tag)
    _change_usage(session, {tag.id: added})
    _forget_links_of(session, ids, [tag.id])
    return added


def bulk_untag(session: Session, experiments: Iterable[Experiment | int], tag: Tag) -> int:
    """Take ``tag`` off each of ``experiments`` (objects or ids); returns how
    many had it."""
    ids = _experiment_ids(session, experiments)
    removed = _unlink(session, ids, ExperimentTag.tag_id == tag.id)
    _change_usage(session, {tag_id: -count for tag_id, count in removed.items()})
    _forget_links_of(session, ids, [tag.id])
    return removed.total()


def detach_all(session: Session, experiment_ids: Sequence[int]) -> None:
    """Remove every tag from the experiments with these ids, lowering each
    tag's usage count by the links it lost.

    Deleting an experiment with the session counts its links out by itself
    (see the ORM events in :mod:`pfd_db.models.search`); a bulk or raw SQL
    delete does not, so call this in its transaction, just before. A link that
    a concurrent writer adds in between is still dropped uncounted; lock the
    experiments (``SELECT ... FOR UPDATE``) first to rule that out, as
    :func:`pfd_db.store.experiments.delete_experiment` does.
    """
    ids = sorted(set(experiment_ids))
    removed = _unlink(session, ids, true())
    _change_usage(session, {tag_id: -count for tag_id, count in removed.items()})
    _forget_links_of(session, ids, removed)


def _link_batch(session: Session, ids: list[int], tag_id: int, added_by: int | None) -> int:
    """Insert the missing links; the number inserted. In experiment id order,
    so that two writers of one tag wait for each other instead of deadlocking."""
    chosen = (
        select(Experiment.id, Tag.id, cast(literal(added_by), Integer))
        .join(Tag, Tag.id == tag_id)
        .where(Experiment.id.in_(ids))
        .order_by(Experiment.id)
    )
    insert = insert_ignoring_conflicts(session, ExperimentTag).from_select(
        ["experiment_id", "tag_id", "added_by"], chosen
    )
    return len(session.execute(insert.returning(ExperimentTag.id)).all())


def _unlink(
    session: Session, experiment_ids: list[int], condition: ColumnElement[bool]
) -> Counter[int]:
    """Delete the links of these experiments that meet ``condition``; how many
    went, by tag id. The rows are locked in id order before the delete, so
    that concurrent deleters queue in one order instead of deadlocking."""
    found = sorted(
        link_id
        for batch in _batches(experiment_ids)
        for link_id in session.scalars(
            select(ExperimentTag.id).where(ExperimentTag.experiment_id.in_(batch), condition)
        )
    )
    removed: Counter[int] = Counter()
    for batch in _batches(found):
        locked = session.scalars(
            select(ExperimentTag.id)
            .where(ExperimentTag.id.in_(batch))
            .order_by(ExperimentTag.id)
            .with_for_update()
        ).all()
        removed.update(
            session.scalars(
                delete(ExperimentTag)
                .where(ExperimentTag.id.in_(locked))
                .returning(ExperimentTag.tag_id)
                .execution_options(synchronize_session="fetch")
            )
        )
    return removed


def _require_tag(session: Session, tag: Tag) -> None:
    if session.scalar(select(Tag.id).where(Tag.id == tag.id)) is None:
        raise NotFound(f"tag {tag.name!r} no longer exists")


def _change_usage(session: Session, deltas: Mapping[int, int]) -> None:
    """Move each tag's usage count by its delta, in tag id order, in the
    database and in the session's copy of the tag if it has one."""
    for tag_id in sorted(deltas):
        if deltas[tag_id]:
            _add_usage(session, tag_id, deltas[tag_id])


def _add_usage(session: Session, tag_id: int, delta: int) -> None:
    count = session.execute(
        update(Tag)
        .where(Tag.id == tag_id)
        .values(usage_count=Tag.usage_count + delta)
        .returning(Tag.usage_count)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    loaded = session.identity_map.get(session.identity_key(Tag, tag_id))
    if loaded is not None:
        set_committed_value(loaded, "usage_count", count)


def _forget_links_of(session: Session, experiment_ids: list[int], tag_ids: Iterable[int]) -> None:
    """Expire the link collections the session holds for these rows, so they
    are read again when next used (and not deleted twice with an experiment)."""
    keys = [session.identity_key(Experiment, i) for i in experiment_ids]
    keys += [session.identity_key(Tag, i) for i in tag_ids]
    for key in keys:
        loaded = session.identity_map.get(key)
        if loaded is not None:
            session.expire(loaded, ["experiment_tags"])


# --- helpers ---------------------------------------------------------------------


def _experiment_ids(session: Session, experiments: Iterable[Experiment | int]) -> list[int]:
    """The distinct ids of ``experiments``, sorted (flushing new ones first)."""
    items = list(experiments)
    if any(isinstance(e, Experiment) and e.id is None for e in items):
        session.flush()
    ids = [e.id if isinstance(e, Experiment) else e for e in items]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidInput("experiments must be Experiment objects or integer ids")
    return sorted(set(ids))


def _batches(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]
