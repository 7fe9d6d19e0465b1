"""Property tests of the search language: any text parses or raises InvalidQuery,
and no query errors in the database or changes it, on both dialects."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfd_db.errors import InvalidQuery
from pfd_db.store.ml import search as store
from pfd_db.store.ml.query_language import Not, Query, parse
from test_search import ALL, add_experiments, fingerprint

# Fragments that steer generated text towards the grammar's corners and SQL's.
FRAGMENTS = [
    "vibration", "vibrating", "bearings", "misalignment", "the", "of", "cnn1d",
    '"', '"outer race"', "-", "--", "tag:", "status:", "model:", "dataset:", "created:",
    "metric.", "metric.accuracy", "metric.f1", "metric.confusion", ">", ">=", "<", "<=", "=",
    "!", "0.9", "-1", "1e999", ".5", "2026-01-10", "2026-02-30", "T10:00+02:00", "Z",
    "baseline", "needs review", "needs-review", "completed", "failed", "cwru", "foo:", ":",
    "'", ";", "DROP TABLE experiments", "OR", "AND", "NOT", "NEAR(", "*", "(", ")", "^",
    "{name}", "\\", "%s", "$1", "?", "&", "|", "!!", "<->", "\x00", "é", "²", "日本", "\u200b",
    " ", " ", "\t",
]  # fmt: skip
fragment_queries = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)
spaced_queries = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=8).map(
    " ".join
)
queries = st.one_of(st.text(max_size=60), fragment_queries, spaced_queries)

# Well-formed terms, to check that valid queries parse into one clause each.
words = st.text(string.ascii_letters + string.digits + "-_.!?'", min_size=1, max_size=10).filter(
    lambda w: not w.startswith("-") and ":" not in w and not w.lower().startswith("metric.")
)
phrases = st.text(string.ascii_letters + " ':-", max_size=12).map(lambda t: f'"{t}"')
filter_values = words | st.text(string.ascii_letters + " ", min_size=1).filter(str.strip).map(
    lambda t: f'"{t}"'
)
filters = st.one_of(
    st.tuples(st.sampled_from(["tag:", "Model:", "dataset:"]), filter_values).map("".join),
    st.sampled_from(["status:completed", "STATUS:Failed", "status:paused"]),
    st.tuples(
        st.sampled_from(["metric.accuracy", "metric.f1", "metric._x9"]),
        st.sampled_from([">", ">=", "<", "<=", "="]),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
    ).map("".join),
    st.tuples(
        st.sampled_from(["created:", "created:>", "created:<=", "created:="]),
        st.dates().map(str) | st.datetimes().map(lambda d: d.isoformat()),
    ).map("".join),
)
terms = st.tuples(st.booleans(), words | phrases | filters).map(
    lambda t: ("-" if t[0] else "") + t[1]
)

PARSE_ONLY = settings(max_examples=150, deadline=None)
# The examples share one test's `db` and `corpus` on purpose: they only read, and
# each asserts the data is unchanged, so the function-scoped-fixture check misfires.
WITH_DB = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PARSE_ONLY
@given(text=queries)
def test_any_text_parses_or_raises_invalid_query(text):
    try:
        parsed = parse(text)
    except InvalidQuery as error:
        assert 0 <= error.position <= len(text)
        assert f"(at position {error.position})" in str(error)
    else:
        assert isinstance(parsed, Query)


@PARSE_ONLY
@given(text=st.text())
def test_unrestricted_text_parses_or_raises_invalid_query(text):
    try:
        parse(text)
    except InvalidQuery as error:
        assert 0 <= error.position <= max(len(text), 0)


@PARSE_ONLY
@given(parts=st.lists(terms, max_size=8), gaps=st.sampled_from([" ", "  ", "\t", " \n "]))
def test_well_formed_queries_parse_into_one_clause_per_term(parts, gaps):
    query = parse(gaps.join(parts))
    assert len(query.clauses) == len(parts)
    negated = [isinstance(clause, Not) for clause in query.clauses]
    assert negated == [part.startswith("-") for part in parts]


@pytest.fixture
def corpus(db):
    """The search tests' experiments, and a fingerprint of every row before any search."""
    add_experiments(db)
    return fingerprint(db)


@WITH_DB
@given(text=queries, limit=st.integers(1, 500), offset=st.integers(0, 8))
def test_no_query_errors_in_the_database_or_changes_it(db, corpus, text, limit, offset):
    try:
        results = store.search(db, text, limit=limit, offset=offset)
    except InvalidQuery:
        pass
    else:
        assert 0 <= len(results.rows) <= min(limit, results.total) <= len(ALL)
        assert all(isinstance(hit.rank, float) for hit in results.rows)
    assert fingerprint(db) == corpus


SINGLE_TERMS = [
    "vibration", "vibrating", "bearings", "misalignment", "imbalance", "the", "!!!", "cnn1d",
    '"outer race"', '"of the"', "tag:baseline", "tag:needs-review", "status:completed",
    "model:cnn1d", "dataset:cwru", "metric.accuracy>0.9", "metric.f1>=0.9",
    "metric.confusion>0", "created:>2026-01-10", "created:2026-01-10",
]  # fmt: skip
DROPPED = {"the", "!!!", '"of the"'}  # nothing searchable: no condition either way


@WITH_DB
@given(first=st.sampled_from(SINGLE_TERMS), second=st.sampled_from(SINGLE_TERMS))
def test_a_term_and_its_negation_split_the_experiments(db, corpus, first, second):
    def found(query):
        return {hit.experiment.name for hit in store.search(db, query).rows}

    matched, unmatched = found(first), found(f"-{first}")
    if first in DROPPED:
        assert matched == unmatched == ALL
    else:
        assert matched | unmatched == ALL and not matched & unmatched
    assert found(f"{first} {second}") == matched & found(second)
