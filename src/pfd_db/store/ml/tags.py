"""Tags on experiments: create them, attach and detach them, suggest them.

``tags.usage_count`` is the number of a tag's ``experiment_tags`` rows. The
database keeps it (triggers, see :mod:`pfd_db.models.tag_counts`), for these
functions and every other writer alike; here links are only inserted and
deleted, and the session's copies of the counts expired so that they are read
again.

On PostgreSQL (READ COMMITTED) concurrent writers wait for each other only on
link rows, always taken in one order (inserts by experiment id, deletes after
``SELECT ... ORDER BY id FOR UPDATE``), each in one statement, whose trigger
then touches the tag rows last, in id order: writers of the same links queue
instead of deadlocking. (Several of these calls in one transaction can still
deadlock with another such transaction; PostgreSQL then aborts one, to be
retried.) On SQLite one writer is in at a time.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator

from slugify import slugify as _transliterated_slug
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    any_,
    bindparam,
    case,
    cast,
    delete,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from pfd_db.errors import Conflict, InvalidInput, NotFound
from pfd_db.models import Experiment, ExperimentTag, Tag, User
from pfd_db.store.validation import require_count, require_str, require_text
from pfd_db.store.writes import ID_MAX, add_unique, id_of, insert_ignoring_conflicts, load
from pfd_db.values import shown

NAME_MAX = 50
SLUG_MAX = 50
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
BATCH = 500  # ids per statement on SQLite, far below its bound-parameter limit


# --- tags ----------------------------------------------------------------------


def slugify(name: str) -> str:
    """``name`` as a URL-safe slug: transliterated to ASCII (``'Größe'`` →
    ``'grosse'``, ``'日本語'`` → ``'ri-ben-yu'``), lowercased, each run of
    other characters than a-z and 0-9 turned into one ``-``, none at either
    end, at most ``SLUG_MAX`` characters."""
    return str(_transliterated_slug(require_str(name, "name"), max_length=SLUG_MAX))


def get_or_create_tag(
    session: Session, name: str, color: str | None = None, created_by: User | int | None = None
) -> Tag:
    """The tag called ``name``, or whose slug is ``name``'s slug, created if there is none.

    A name that differs from a tag's only in case, spacing and punctuation
    (``'deep learning'`` for ``'Deep Learning'``) is that tag; one whose slug
    is another tag's but whose letters differ (``'Grosse'`` beside ``'Größe'``)
    raises :class:`Conflict` naming that tag. ``color`` (``#rrggbb``) and
    ``created_by`` apply only to a new tag. Two callers creating the same tag at
    once both get the one row.
    """
    name = require_text(name, "name", NAME_MAX)
    slug = _valid_slug(name)
    color = _valid_color(color)
    creator = id_of(session, User, created_by, "created_by")
    existing = _tag_named(session, name, slug)
    if existing is None:
        tag = Tag(name=name, slug=slug, color=color, created_by=creator)
        try:
            add_unique(session, tag, (Tag.slug == slug) | (Tag.name == name), conflict=name)
        except Conflict:
            existing = _tag_named(session, name, slug)  # a concurrent caller's
        else:
            return tag
    if existing is None:  # created and deleted again meanwhile
        raise Conflict(f"tag {name!r} changed while it was being created; try again")
    return _same_tag(existing, name, slug)


def _tag_named(session: Session, name: str, slug: str) -> Tag | None:
    """The tag called ``name``, else the one with ``slug``."""
    return session.scalars(
        select(Tag)
        .where((Tag.name == name) | (Tag.slug == slug))
        .order_by(case((Tag.name == name, 0), else_=1))
        .limit(1)
    ).one_or_none()


def _same_tag(tag: Tag, name: str, slug: str) -> Tag:
    """``tag`` if ``name`` names it; Conflict if only their slugs agree."""
    if tag.name != name and _letters(tag.name) != _letters(name):
        raise Conflict(
            f"tag name {name!r} has the slug {slug!r} of the tag {tag.name!r}; "
            "use that tag, or a name that differs in letters or digits"
        )
    return tag


def _letters(name: str) -> str:
    """``name``'s letters and digits, case and compatibility forms folded."""
    return "".join(c for c in unicodedata.normalize("NFKC", name).casefold() if c.isalnum())


def _valid_slug(name: str) -> str:
    slug = slugify(name)
    if not slug:
        raise InvalidInput(f"name {name!r} has no letters or digits to make a slug from")
    return slug


def _valid_color(color: str | None) -> str | None:
    if color is None:
        return None
    if not isinstance(color, str) or not HEX_COLOR.fullmatch(color):
        raise InvalidInput(f"color must look like #rrggbb (got {shown(color)})")
    return color.lower()


def popular_tags(session: Session, limit: int = 20) -> list[Tag]:
    """The ``limit`` most used tags, most used first, then by name."""
    return list(session.scalars(_most_used(limit)))


def suggest_tags(session: Session, prefix: str, limit: int = 10) -> list[Tag]:
    """Tags whose name or slug starts with ``prefix`` (any case; ``%`` and ``_``
    match only themselves), most used first. An empty prefix suggests the most
    used tags."""
    text = require_str(prefix, "prefix").strip()
    query = _most_used(limit)
    if len(text) > max(NAME_MAX, SLUG_MAX):  # longer than any name: nothing starts with it
        return []
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
    session: Session,
    experiment: Experiment | int,
    tag: Tag | int,
    added_by: User | int | None = None,
) -> bool:
    """Put ``tag`` on ``experiment``; True if it was not there yet."""
    experiment = load(session, Experiment, experiment, "experiment")
    return bulk_tag(session, [experiment], tag, added_by) == 1


def untag_experiment(session: Session, experiment: Experiment | int, tag: Tag | int) -> bool:
    """Take ``tag`` off ``experiment``; True if it was there."""
    experiment = load(session, Experiment, experiment, "experiment")
    return bulk_untag(session, [experiment], tag) == 1


def bulk_tag(
    session: Session,
    experiments: Iterable[Experiment | int],
    tag: Tag | int,
    added_by: User | int | None = None,
) -> int:
    """Put ``tag`` on each of ``experiments`` (objects or ids); returns how many
    did not have it yet. Experiments that no longer exist are skipped."""
    tag = load(session, Tag, tag, "tag")
    ids = _experiment_ids(session, experiments)
    adder = id_of(session, User, added_by, "added_by")
    if not ids:
        return 0
    added = sum(_link(session, among, tag.id, adder) for among in _among(session, ids))
    if not added:
        _require_tag(session, tag)
    _forget(session, ids, [tag.id])
    return added


def bulk_untag(session: Session, experiments: Iterable[Experiment | int], tag: Tag | int) -> int:
    """Take ``tag`` off each of ``experiments`` (objects or ids); returns how
    many had it."""
    tag = load(session, Tag, tag, "tag")
    ids = _experiment_ids(session, experiments)
    removed = _unlink(session, ids, ExperimentTag.tag_id == tag.id)
    _forget(session, ids, [tag.id])
    return removed.total()


def detach_all(session: Session, experiments: Iterable[Experiment | int]) -> None:
    """Remove every tag from ``experiments`` (objects or ids); each tag's usage
    count drops by the links it lost."""
    ids = _experiment_ids(session, experiments)
    removed = _unlink(session, ids, true())
    _forget(session, ids, removed)


def _link(session: Session, among: ColumnElement[bool], tag_id: int, added_by: int | None) -> int:
    """Insert the missing links of the experiments ``among`` selects; the number
    inserted. In experiment id order, so that two writers of one tag wait for
    each other instead of deadlocking."""
    chosen = (
        select(Experiment.id, Tag.id, cast(literal(added_by), Integer))
        .join(Tag, Tag.id == tag_id)
        .where(among)
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
    of_experiments = ExperimentTag.experiment_id
    locked = sorted(
        link_id
        for among in _among(session, experiment_ids, of_experiments)
        for link_id in session.scalars(
            select(ExperimentTag.id)
            .where(among, condition)
            .order_by(ExperimentTag.id)
            .with_for_update()
        )
    )
    removed: Counter[int] = Counter()
    for among in _among(session, locked, ExperimentTag.id):
        removed.update(
            session.scalars(
                delete(ExperimentTag)
                .where(among)
                .returning(ExperimentTag.tag_id)
                .execution_options(synchronize_session="fetch")
            )
        )
    return removed


def _require_tag(session: Session, tag: Tag) -> None:
    if session.scalar(select(Tag.id).where(Tag.id == tag.id)) is None:
        raise NotFound(f"tag {tag.name!r} no longer exists")


def _forget(session: Session, experiment_ids: list[int], tag_ids: Iterable[int]) -> None:
    """Expire the link collections the session holds for these rows, so they are
    read again when next used (and not deleted twice with an experiment). (The
    tags' usage counts the session expires itself, see pfd_db.models.search.)"""
    keys = [session.identity_key(Experiment, i) for i in experiment_ids]
    keys += [session.identity_key(Tag, i) for i in tag_ids]
    for key in keys:
        loaded = session.identity_map.get(key)
        if loaded is not None:
            session.expire(loaded, ["experiment_tags"])


# --- helpers ---------------------------------------------------------------------


def _experiment_ids(session: Session, experiments: Iterable[Experiment | int]) -> list[int]:
    """The distinct ids of ``experiments``, sorted (flushing new ones first);
    ids no row can have are left out."""
    if isinstance(experiments, str | bytes) or not isinstance(experiments, Iterable):
        raise InvalidInput("experiments must be a list of Experiment objects or integer ids")
    items = list(experiments)
    if any(isinstance(e, Experiment) and e.id is None for e in items):
        session.flush()
    ids = [e.id if isinstance(e, Experiment) else e for e in items]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidInput("experiments must be Experiment objects or integer ids")
    return sorted({i for i in ids if 0 < i <= ID_MAX})


def _among(
    session: Session,
    ids: list[int],
    column: InstrumentedAttribute[int] = Experiment.id,
) -> Iterator[ColumnElement[bool]]:
    """Conditions that together select the rows whose ``column`` is one of ``ids``.

    PostgreSQL: one ``column = ANY(:ids)``, so that each step is one statement
    (its lock order is the statement's). SQLite: ``column IN (...)`` for each
    ``BATCH`` ids, under its bound-parameter limit."""
    if not ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        yield column == any_(bindparam("ids", ids, type_=ARRAY(Integer)))
        return
    for start in range(0, len(ids), BATCH):
        yield column.in_(ids[start : start + BATCH])
