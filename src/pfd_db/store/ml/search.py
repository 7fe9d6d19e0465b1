"""Search over experiments, and users' saved searches.

``search(session, 'bearing vibration tag:baseline -status:failed metric.accuracy>0.9')``
returns the experiments matching every term, best first, then newest. The
language is described in :mod:`pfd_db.store.ml.query_language`.

How a query becomes SQL (user text only ever travels as bound parameters):

- Words and phrases search the full-text document (name, model type, notes).
  PostgreSQL: ``plainto_tsquery('english', :word)`` and
  ``phraseto_tsquery('english', :phrase)`` joined with ``&&`` (``!!`` for a
  negated one), matched against ``experiments.search_vector`` and ranked by
  ``ts_rank_cd``. SQLite: an FTS5 expression in which every word and phrase is
  a string literal, bound as one parameter, matched through ``experiments_fts``
  and ranked by ``-bm25`` with the column weights of ``ts_rank_cd`` (name 1.0,
  model type 0.4, notes 0.2); negated ones exclude the rows their own MATCH
  finds. Bigger rank is better on both.
- Words and phrases with nothing searchable in them (only punctuation, or only
  English stop words such as "the" or "of") are dropped, on both dialects:
  PostgreSQL drops stop words itself, and SQLite's index keeps them, so they are
  dropped before the query is built. A query left with no terms lists every
  experiment, newest first, like the empty query.
- ``tag:`` matches the tag whose slug is the value's slug (so ``tag:"Needs
  Review"``, ``tag:needs-review`` and ``tag:NEEDS_REVIEW`` find the same tag, as
  :func:`pfd_db.store.ml.tags.get_or_create_tag` would) or whose name is the value;
  ``model:`` and ``dataset:`` the model type and dataset name, ignoring case.
  ``metric.NAME`` compares the metric as a float, read once per row; an
  experiment without that metric, or with a value that is not a number, does not
  match (so ``-metric.NAME>x`` includes it).
- Negation is the complement: ``-term`` matches exactly the experiments that
  ``term`` does not.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    Select,
    and_,
    case,
    column,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.dialects.postgresql.ext import phraseto_tsquery, plainto_tsquery
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnClause, UnaryExpression

from pfd_db.errors import InvalidQuery, NotFound
from pfd_db.models import Dataset, Experiment, ExperimentTag, SavedSearch, Tag, User
from pfd_db.models.fulltext import FTS_TABLE
from pfd_db.store.ml.query_language import (
    CreatedCompare,
    DatasetIs,
    MetricCompare,
    ModelIs,
    Not,
    Op,
    Phrase,
    Query,
    StatusIs,
    TagIs,
    Term,
    Word,
    day_after,
    parse,
)
from pfd_db.store.ml.tags import slugify
from pfd_db.store.status import update_if
from pfd_db.store.validation import require_count, require_flag, require_text
from pfd_db.store.writes import add_unique, load
from pfd_db.types import utcnow

MAX_LIMIT = 500
SAVED_NAME_MAX = 200
TEXT_SEARCH_CONFIG = "english"
BM25_WEIGHTS = (1.0, 0.4, 0.2)  # name, model_type, notes: ts_rank_cd's A, B, C weights

# PostgreSQL's English stop words (tsearch_data/english.stop).
STOP_WORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his "
    "himself she her hers herself it its itself they them their theirs themselves what "
    "which who whom this that these those am is are was were be been being have has had "
    "having do does did doing a an the and but if or because as until while of at by for "
    "with about against between into through during before after above below to from up "
    "down in out on off over under again further then once here there when where why how "
    "all any both each few more most other some such no nor not only own same so than too "
    "very s t can will just don should now".split()
)
_TOKEN = re.compile(r"[^\W_]+")

_FTS = table(FTS_TABLE, column("rowid"))
# FTS5's hidden column named after its table: the left side of MATCH, bm25's argument.
_FTS_DOCUMENT: ColumnClause[Any] = literal_column(FTS_TABLE)
_COMPARE: dict[Op, Callable[[Any, Any], Any]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.EQ: operator.eq,
}


@dataclass(frozen=True)
class SearchHit:
    """One experiment found, with its rank (bigger is better; 0 without free text)."""

    experiment: Experiment
    rank: float


@dataclass(frozen=True)
class SearchResults:
    """A page of hits, best first then newest, and how many match in all."""

    rows: list[SearchHit]
    total: int


# --- searching ---------------------------------------------------------------


def search(session: Session, query: str, limit: int = 50, offset: int = 0) -> SearchResults:
    """The experiments matching ``query``, best first, then newest.

    :class:`~pfd_db.errors.InvalidQuery` (naming the position) for a malformed
    query, :class:`~pfd_db.errors.InvalidInput` for ``limit`` outside 1..500 or a
    negative ``offset``. Reads only.
    """
    _check_page(limit, offset)
    if not isinstance(query, str):  # before the caches below hash it
        raise InvalidQuery("the query must be a string", 0)
    dialect = session.get_bind().dialect.name
    rows = session.execute(_page_statement(query, dialect, limit, offset)).all()
    if rows:
        total = int(rows[0].total)
    elif offset:  # past the last page, the window count has no row to ride on
        total = session.scalar(_planned(query, dialect).count()) or 0
    else:
        total = 0
    return SearchResults([SearchHit(row.Experiment, float(row.rank)) for row in rows], total)


@lru_cache(maxsize=1024)
def _planned(query: str, dialect: str) -> _Plan:
    """The plan of ``query``: parsed and built once, then reused (statements are
    immutable and carry their values as bound parameters)."""
    return _plan(parse(query), dialect)


@lru_cache(maxsize=1024)
def _page_statement(query: str, dialect: str, limit: int, offset: int) -> Select[Any]:
    """One page of ``query``; a reused statement also keeps SQLAlchemy's cache key,
    so a repeated search skips building and keying the statement."""
    return _planned(query, dialect).page(limit, offset)


def _check_page(limit: int, offset: int) -> None:
    require_count(limit, "limit", 1, MAX_LIMIT)
    require_count(offset, "offset")


@dataclass(frozen=True)
class _TextMatch:
    """The full-text part of a query: row conditions, the rank, and the join it needs."""

    conditions: tuple[ColumnElement[bool], ...] = ()
    rank: ColumnElement[float] | None = None
    join: tuple[FromClause, ColumnElement[bool]] | None = None


@dataclass(frozen=True)
class _Plan:
    """A parsed query in SQL: the conditions on experiments and how to rank them."""

    text: _TextMatch
    filters: tuple[ColumnElement[bool], ...] = ()

    def page(self, limit: int, offset: int) -> Select[Any]:
        rank = (self.text.rank if self.text.rank is not None else literal(0.0, Float)).label("rank")
        by_rank = [rank.desc()] if self.text.rank is not None else []
        return (
            self._select(Experiment, rank, func.count().over().label("total"))
            .order_by(*by_rank, Experiment.created_at.desc(), Experiment.id.desc())
            .limit(limit)
            .offset(offset)
        )

    def count(self) -> Select[Any]:
        return self._select(func.count(Experiment.id))

    def _select(self, *columns: Any) -> Select[Any]:
        statement = select(*columns).select_from(Experiment)
        if self.text.join is not None:
            statement = statement.join(*self.text.join)
        return statement.where(*self.text.conditions, *self.filters)


def _plan(query: Query, dialect: str) -> _Plan:
    positive: list[Word | Phrase] = []
    negative: list[Word | Phrase] = []
    filters: list[ColumnElement[bool]] = []
    for clause in query.clauses:
        negated = isinstance(clause, Not)
        term = clause.term if isinstance(clause, Not) else clause
        if not isinstance(term, Word | Phrase):
            condition = _condition(term, dialect)
            filters.append(not_(condition) if negated else condition)
        elif _searchable(term):
            (negative if negated else positive).append(term)
    text_match = _postgres_text if dialect == "postgresql" else _sqlite_text
    return _Plan(text_match(positive, negative), tuple(filters))


def _searchable(term: Word | Phrase) -> bool:
    """Whether ``term`` has a word that is not a stop word."""
    return any(token.lower() not in STOP_WORDS for token in _TOKEN.findall(term.text))


# --- full text, per dialect --------------------------------------------------


def _postgres_text(
    positive: Sequence[Word | Phrase], negative: Sequence[Word | Phrase]
) -> _TextMatch:
    parts = [_tsquery(t) for t in positive] + [_tsquery_not(_tsquery(t)) for t in negative]
    if not parts:
        return _TextMatch()
    tsquery = reduce(lambda a, b: a.op("&&", return_type=TSQUERY)(b), parts)
    vector = Experiment.search_vector
    # Terms in which PostgreSQL's parser finds no word (exotic punctuation) leave
    # an empty tsquery, which matches nothing: drop them instead, as documented.
    # The planner folds numnode() of the bound query, so the GIN index still serves.
    matches = or_(func.numnode(tsquery) == 0, vector.op("@@")(tsquery))
    return _TextMatch(conditions=(matches,), rank=func.ts_rank_cd(vector, tsquery, type_=Float))


def _tsquery(term: Word | Phrase) -> ColumnElement[Any]:
    to_tsquery = phraseto_tsquery if isinstance(term, Phrase) else plainto_tsquery
    return to_tsquery(TEXT_SEARCH_CONFIG, term.text)


def _tsquery_not(query: ColumnElement[Any]) -> ColumnElement[Any]:
    return UnaryExpression(query, operator=operators.custom_op("!!"), type_=TSQUERY)


def _sqlite_text(
    positive: Sequence[Word | Phrase], negative: Sequence[Word | Phrase]
) -> _TextMatch:
    conditions: list[ColumnElement[bool]] = []
    if negative:
        excluded = select(_FTS.c.rowid).where(_fts_match(" OR ".join(map(_fts_string, negative))))
        conditions.append(Experiment.id.not_in(excluded))
    if not positive:
        return _TextMatch(conditions=tuple(conditions))
    # bm25() only works next to its MATCH: rank in a subquery, which SQLite
    # keeps apart from the outer query's window function.
    hits = (
        select(_FTS.c.rowid, (-func.bm25(_FTS_DOCUMENT, *BM25_WEIGHTS, type_=Float)).label("rank"))
        .where(_fts_match(" AND ".join(map(_fts_string, positive))))
        .subquery("fts_hits")
    )
    return _TextMatch(tuple(conditions), hits.c.rank, (hits, hits.c.rowid == Experiment.id))


def _fts_match(expression: str) -> ColumnElement[bool]:
    return _FTS_DOCUMENT.match(expression)


def _fts_string(term: Word | Phrase) -> str:
    """``term`` as an FTS5 string literal: its words, none of them an operator."""
    return '"' + term.text.replace('"', '""') + '"'


# --- filters -----------------------------------------------------------------


def _condition(term: Term, dialect: str) -> ColumnElement[bool]:
    match term:
        case TagIs(name):
            return Experiment.id.in_(_tagged(name))
        case StatusIs(status):
            return Experiment.status == status
        case ModelIs(model_type):
            return _same_text(Experiment.model_type, model_type)
        case DatasetIs(name):
            return Experiment.dataset_id.in_(
                select(Dataset.id).where(_same_text(Dataset.name, name))
            )
        case MetricCompare(name, op, number):
            # NULL (no such metric) is false here, so that the negation includes it;
            # the metric is read once per row.
            return func.coalesce(_COMPARE[op](_metric_value(name, dialect), number), false())
        case CreatedCompare():
            return _created(term)
    raise AssertionError(f"not a filter: {term!r}")


def _same_text(column_: InstrumentedAttribute[str], value: str) -> ColumnElement[bool]:
    return func.lower(column_) == func.lower(value)


def _tagged(name: str) -> Select[Any]:
    """The experiments linked to the tag whose slug is ``name``'s slug or whose name
    is ``name``: both unique columns, so the tag is found through an index, and its
    links through ``ix_experiment_tags_tag_id``."""
    return (
        select(ExperimentTag.experiment_id)
        .join(Tag, Tag.id == ExperimentTag.tag_id)
        .where(or_(Tag.slug == slugify(name), Tag.name == name))
    )


def _metric_value(name: str, dialect: str) -> ColumnElement[float]:
    """``metrics[name]`` as a float, NULL when it is missing or not a number.

    On SQLite the document is read only if it is valid JSON: a row written
    before NaN was refused holds ``NaN`` there, which SQLite's JSON functions
    reject ("malformed JSON") and would fail the whole query. Nested CASEs,
    because SQLite evaluates only the branch a CASE takes. (PostgreSQL's JSONB
    cannot hold such a value.)
    """
    entry = Experiment.metrics[name]
    if dialect == "postgresql":
        return case((func.jsonb_typeof(entry) == "number", entry.as_float()))
    is_number = func.json_type(Experiment.metrics, f'$."{name}"').in_(("integer", "real"))
    return case((func.json_valid(Experiment.metrics) == 1, case((is_number, entry.as_float()))))


def _created(term: CreatedCompare) -> ColumnElement[bool]:
    created_at = Experiment.created_at
    if not term.whole_day:
        return _COMPARE[term.op](created_at, term.moment)  # type: ignore[no-any-return]
    start, end = term.moment, day_after(term.moment)
    by_day = {
        Op.GT: created_at >= end,
        Op.GE: created_at >= start,
        Op.LT: created_at < start,
        Op.LE: created_at < end,
        Op.EQ: and_(created_at >= start, created_at < end),
    }
    return by_day[term.op]


# --- saved searches ----------------------------------------------------------


def save_search(
    session: Session, user: User | int, name: str, query: str, *, pinned: bool = False
) -> SavedSearch:
    """Save ``query`` under ``name`` for ``user``.

    :class:`~pfd_db.errors.InvalidQuery` if the query does not parse,
    :class:`~pfd_db.errors.InvalidInput` for an empty or too long name,
    :class:`~pfd_db.errors.Conflict` if the user already has a search by that name.
    """
    user = load(session, User, user, "user")
    name = require_text(name, "name", SAVED_NAME_MAX)
    parse(query)
    pinned = require_flag(pinned, "pinned")
    saved = SavedSearch(user_id=user.id, name=name, query=query, is_pinned=pinned)
    add_unique(
        session,
        saved,
        {SavedSearch.user_id: user.id, SavedSearch.name: name},
        conflict=f"{user.username} already has a saved search named {name!r}",
    )
    return saved


def saved_searches(session: Session, user: User | int) -> list[SavedSearch]:
    """``user``'s saved searches: pinned first, then most used, then by name."""
    user = load(session, User, user, "user")
    return list(
        session.scalars(
            select(SavedSearch)
            .where(SavedSearch.user_id == user.id)
            .order_by(
                SavedSearch.is_pinned.desc(),
                SavedSearch.usage_count.desc(),
                SavedSearch.name,
                SavedSearch.id,
            )
        )
    )


def run_saved_search(
    session: Session, saved: SavedSearch | int, limit: int = 50, offset: int = 0
) -> SearchResults:
    """Run ``saved``'s query, then count the use (an atomic increment) and its
    time; ``saved`` (the session's copy) shows the stored count after."""
    saved = load(session, SavedSearch, saved, "saved")
    results = search(session, saved.query, limit, offset)
    if not update_if(
        session, saved, usage_count=SavedSearch.usage_count + 1, last_used_at=utcnow()
    ):
        raise NotFound(f"saved search {saved.name!r} no longer exists")
    return results


def pin(session: Session, saved: SavedSearch | int, pinned: bool = True) -> SavedSearch:
    """Pin ``saved`` to the top of its owner's list (or unpin it)."""
    saved = load(session, SavedSearch, saved, "saved")
    saved.is_pinned = require_flag(pinned, "pinned")
    session.flush()
    return saved


def delete_saved_search(session: Session, saved: SavedSearch | int) -> None:
    """Delete ``saved``."""
    saved = load(session, SavedSearch, saved, "saved")
    session.delete(saved)
    session.flush()
