"""Experiment search and saved searches, on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session

from pfd_db.errors import Conflict, InvalidInput, InvalidQuery, NotFound
from pfd_db.models import (
    Dataset,
    Experiment,
    ExperimentStatus,
    ExperimentTag,
    SavedSearch,
    Tag,
    User,
)
from pfd_db.store import writes
from pfd_db.store.ml import search as store
from pfd_db.store.ml.query_language import (
    MAX_QUERY_LENGTH,
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
    Word,
    parse,
)

NEWEST_FIRST = [
    "transformer-spectra",
    "resnet-outer-race",
    "cnn-no-augmentation",
    "baseline-cnn",
    "imbalance-detector",
    "lstm-gearbox",
]
ALL = set(NEWEST_FIRST)

EXPERIMENTS = [
    # name, model type, dataset, status, metrics, notes, created (UTC), tags
    (
        "baseline-cnn",
        "cnn1d",
        "CWRU",
        "completed",
        {"accuracy": 0.95, "f1": 0.93},
        "First baseline on raw vibration signals from the drive-end bearings.",
        datetime(2026, 1, 10, 9, 0, tzinfo=UTC),
        ["baseline"],
    ),
    (
        "resnet-outer-race",
        "resnet1d",
        "CWRU",
        "completed",
        {"accuracy": 0.97, "f1": 0.96},
        "Residual network; strong on outer race faults, weak on shaft misalignment.",
        datetime(2026, 2, 1, 12, 0, tzinfo=UTC),
        ["production"],
    ),
    (
        "lstm-gearbox",
        "lstm",
        "Paderborn University",
        "failed",
        {"accuracy": 0.71, "loss": 1.8},
        "Diverged after epoch 12: the vibrating gearbox recordings were too noisy.",
        datetime(2025, 12, 20, 18, 30, tzinfo=UTC),
        ["needs review"],
    ),
    (
        "transformer-spectra",
        "transformer",
        "Paderborn University",
        "running",
        None,
        "Attention over long windows of vibration spectra from the bearings test rig.",
        datetime(2026, 2, 15, 8, 0, tzinfo=UTC),
        [],
    ),
    (
        "cnn-no-augmentation",
        "cnn1d",
        "CWRU",
        "cancelled",
        {"accuracy": 0.88},
        "Ablation without augmentation; misalignment and imbalance were confused.",
        datetime(2026, 1, 20, 15, 0, tzinfo=UTC),
        ["baseline", "needs review"],
    ),
    (
        "imbalance-detector",
        "wavenet",
        "Paderborn University",
        "completed",
        {"accuracy": "n/a", "f1": 0.9, "epochs": 40, "confusion": [[1, 0], [0, 1]]},
        "Trained on rotor recordings.",
        datetime(2026, 1, 5, 7, 0, tzinfo=UTC),
        ["production"],
    ),
]
TAGS = {"baseline": "baseline", "needs review": "needs-review", "production": "production"}


@pytest.fixture
def experiments(db) -> dict[str, Experiment]:
    """Six experiments on two datasets, with tags, metrics and notes (committed)."""
    return add_experiments(db)


def add_experiments(db) -> dict[str, Experiment]:
    """Add and commit the datasets, tags and experiments above; experiments by name."""
    datasets = {
        name: Dataset(
            name=name,
            num_signals=100,
            fault_types=["normal", "outer_race"],
            severity_levels=["mild"],
            file_path=f"data/{name}.h5",
        )
        for name in ("CWRU", "Paderborn University")
    }
    tags = {name: Tag(name=name, slug=slug) for name, slug in TAGS.items()}
    db.add_all([*datasets.values(), *tags.values()])
    made = {}
    for name, model, dataset, status, metrics, notes, created, tag_names in EXPERIMENTS:
        experiment = Experiment(
            name=name,
            model_type=model,
            dataset=datasets[dataset],
            status=ExperimentStatus(status),
            config={"epochs": 50},
            metrics=metrics,
            notes=notes,
            created_at=created,
            updated_at=created,
        )
        db.add(experiment)
        db.flush()
        db.add_all(ExperimentTag(experiment_id=experiment.id, tag_id=tags[t].id) for t in tag_names)
        made[name] = experiment
    db.commit()
    return made


@pytest.fixture
def users(db) -> tuple[User, User]:
    ada, bob = User(username="ada", email="ada@example.com"), User(username="bob", email="b@x.io")
    db.add_all([ada, bob])
    db.commit()
    return ada, bob


def found(db, query: str, **page) -> list[str]:
    """Names of the experiments ``query`` finds, in order."""
    return [hit.experiment.name for hit in store.search(db, query, **page).rows]


def fingerprint(db) -> list[tuple]:
    """Every row of the tables a search could touch."""
    rows = []
    for model in (Experiment, Tag, ExperimentTag, Dataset):
        columns = [c for c in model.__table__.columns if c.name != "search_vector"]
        rows += [tuple(map(str, r)) for r in db.execute(select(*columns).order_by(model.id))]
    return rows


# --- free text ---------------------------------------------------------------


def test_empty_query_lists_every_experiment_newest_first(db, experiments):
    results = store.search(db, "")
    assert [hit.experiment.name for hit in results.rows] == NEWEST_FIRST
    assert results.total == 6
    assert {hit.rank for hit in results.rows} == {0.0}
    assert found(db, "   \t ") == NEWEST_FIRST


def test_a_word_finds_the_experiments_that_mention_it(db, experiments):
    assert set(found(db, "bearings")) == {"baseline-cnn", "transformer-spectra"}
    assert set(found(db, "misalignment")) == {"resnet-outer-race", "cnn-no-augmentation"}
    assert set(found(db, "lstm")) == {"lstm-gearbox"}  # the model type is in the document


def test_words_are_stemmed(db, experiments):
    vibration = {"baseline-cnn", "lstm-gearbox", "transformer-spectra"}
    assert set(found(db, "vibration")) == vibration
    assert set(found(db, "vibrating")) == vibration  # "vibrating" finds "vibration"
    assert set(found(db, "Bearing")) == {"baseline-cnn", "transformer-spectra"}


def test_words_are_anded(db, experiments):
    assert set(found(db, "vibration bearings")) == {"baseline-cnn", "transformer-spectra"}
    assert found(db, "vibration misalignment") == []


def test_a_phrase_needs_its_words_together_in_order(db, experiments):
    assert found(db, '"outer race"') == ["resnet-outer-race"]
    assert found(db, '"race outer"') == []
    assert found(db, '"misalignment and imbalance"') == ["cnn-no-augmentation"]
    assert found(db, '"imbalance misalignment"') == []


def test_a_name_match_outranks_a_notes_only_match(db, experiments):
    results = store.search(db, "imbalance")
    assert [hit.experiment.name for hit in results.rows] == [
        "imbalance-detector",  # older, but the word is in its name
        "cnn-no-augmentation",
    ]
    assert results.rows[0].rank > results.rows[1].rank > 0


def test_without_free_text_the_newest_come_first(db, experiments):
    assert found(db, "model:cnn1d") == ["cnn-no-augmentation", "baseline-cnn"]
    expected = ["resnet-outer-race", "cnn-no-augmentation", "imbalance-detector"]
    assert found(db, "-vibration") == expected


def test_stop_words_and_punctuation_are_dropped_on_both_dialects(db, experiments):
    assert set(found(db, "the vibration of bearings")) == {"baseline-cnn", "transformer-spectra"}
    assert found(db, "the") == NEWEST_FIRST
    assert found(db, "!!! ... --") == NEWEST_FIRST
    assert found(db, '"of the"') == NEWEST_FIRST
    assert set(found(db, "vibration AND NOT bearings")) == {"baseline-cnn", "transformer-spectra"}


# --- filters -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag:baseline", {"baseline-cnn", "cnn-no-augmentation"}),
        ('tag:"needs review"', {"lstm-gearbox", "cnn-no-augmentation"}),
        ("tag:needs-review", {"lstm-gearbox", "cnn-no-augmentation"}),
        ("tag:NEEDS-REVIEW", {"lstm-gearbox", "cnn-no-augmentation"}),
        ("tag:nonexistent", set()),
        ("status:completed", {"baseline-cnn", "resnet-outer-race", "imbalance-detector"}),
        ("status:FAILED", {"lstm-gearbox"}),
        ("status:paused", set()),
        ("model:cnn1d", {"baseline-cnn", "cnn-no-augmentation"}),
        ("model:WaveNet", {"imbalance-detector"}),
        ("dataset:cwru", {"baseline-cnn", "resnet-outer-race", "cnn-no-augmentation"}),
        (
            'dataset:"Paderborn University"',
            {"lstm-gearbox", "transformer-spectra", "imbalance-detector"},
        ),
    ],
)
def test_field_filters(db, experiments, query, expected):
    assert set(found(db, query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("metric.accuracy>0.9", {"baseline-cnn", "resnet-outer-race"}),
        ("metric.accuracy>=0.95", {"baseline-cnn", "resnet-outer-race"}),
        ("metric.accuracy=0.95", {"baseline-cnn"}),
        ("metric.accuracy<0.9", {"lstm-gearbox", "cnn-no-augmentation"}),
        ("metric.accuracy<=0.88", {"lstm-gearbox", "cnn-no-augmentation"}),
        ("metric.f1>0.9", {"baseline-cnn", "resnet-outer-race"}),
        ("metric.f1>=.9", {"baseline-cnn", "resnet-outer-race", "imbalance-detector"}),
        ("metric.epochs=40", {"imbalance-detector"}),  # a JSON integer
        ("metric.epochs>3.9e1", {"imbalance-detector"}),
        ("metric.loss<2", {"lstm-gearbox"}),
        ("metric.confusion>0", set()),  # a list is not a number
        # "n/a" is not a number
        ("metric.accuracy>-1", ALL - {"transformer-spectra", "imbalance-detector"}),
        ("metric.missing>0", set()),
    ],
)
def test_metric_comparisons(db, experiments, query, expected):
    assert set(found(db, query)) == expected


@pytest.mark.parametrize(
    "value",
    ["needs-review", '"needs review"', "NEEDS_REVIEW", '"Needs  Review!"', "needs.review"],
)
def test_a_tag_is_found_by_its_slug_whatever_the_case_spacing_and_punctuation(
    db, experiments, value
):
    assert set(found(db, f"tag:{value}")) == {"lstm-gearbox", "cnn-no-augmentation"}
    assert set(found(db, f"-tag:{value}")) == ALL - {"lstm-gearbox", "cnn-no-augmentation"}


def test_a_tag_whose_slug_is_not_its_names_is_found_by_its_exact_name(db, experiments):
    odd = Tag(name="Team A/B", slug="team-x")  # written by hand, not by tags.get_or_create_tag
    db.add(odd)
    db.flush()
    db.add(ExperimentTag(experiment_id=experiments["lstm-gearbox"].id, tag_id=odd.id))
    db.commit()
    assert found(db, 'tag:"Team A/B"') == ["lstm-gearbox"]
    assert found(db, "tag:team-x") == ["lstm-gearbox"]
    assert found(db, "tag:!!!") == []  # nothing to make a slug from, and no such name


def captured_page_statement(db, engine, query: str) -> tuple[str, object]:
    """The SQL and parameters that ``search`` sends for ``query``'s page."""
    from probes import executions

    with executions(engine) as sent:
        store.search(db, query)
    [page] = [(sql, params) for sql, params in sent if sql.lstrip().startswith("SELECT")]
    return page


def test_a_tag_filter_finds_the_tag_through_an_index(db, engine, dialect, experiments):
    sql, params = captured_page_statement(db, engine, "tag:Needs-Review")
    with engine.connect() as conn:
        if dialect == "sqlite":
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            text = "\n".join(row[-1] for row in plan)
            assert "SCAN tags" not in text and "SCAN experiment_tags" not in text, text
            assert "sqlite_autoindex_tags" in text, text
        else:  # with sequential scans priced out, only an index can keep them away
            conn.exec_driver_sql("SET enable_seqscan = off")
            text = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params))
            conn.rollback()
            assert "Seq Scan on tags" not in text, text
            assert "Seq Scan on experiment_tags" not in text, text
            # the planner may reach tags by slug or, from a few experiments, by id
            assert "uq_tags_slug" in text or "pk_tags" in text, text


@pytest.mark.parametrize("negated", [False, True])
def test_a_metric_condition_reads_the_metric_once_per_row(
    db, engine, dialect, experiments, negated
):
    sql, _ = captured_page_statement(db, engine, f"{'-' if negated else ''}metric.accuracy>0.9")
    reads = sql.count("jsonb_typeof(" if dialect == "postgresql" else "json_type(")
    assert reads == 1, sql


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("created:>2026-01-01", ALL - {"lstm-gearbox"}),
        # a date is its whole UTC day
        (
            "created:>2026-01-10",
            {"resnet-outer-race", "transformer-spectra", "cnn-no-augmentation"},
        ),
        (
            "created:>=2026-01-10",
            {"baseline-cnn", "resnet-outer-race", "transformer-spectra", "cnn-no-augmentation"},
        ),
        ("created:2026-01-10", {"baseline-cnn"}),
        ("created:=2026-01-10", {"baseline-cnn"}),
        ("created:<2026-01-10", {"lstm-gearbox", "imbalance-detector"}),
        ("created:<=2026-01-10", {"baseline-cnn", "lstm-gearbox", "imbalance-detector"}),
        # a datetime is that moment, UTC when naive
        (
            "created:>2026-01-10T08:00:00",
            {"baseline-cnn", "resnet-outer-race", "transformer-spectra", "cnn-no-augmentation"},
        ),
        (
            'created:>"2026-01-10 10:00"',
            {"resnet-outer-race", "transformer-spectra", "cnn-no-augmentation"},
        ),
        ("created:<2026-01-10T10:00+02:00", {"lstm-gearbox", "imbalance-detector"}),
        ("created:<2026-01-10T09:30Z", {"baseline-cnn", "lstm-gearbox", "imbalance-detector"}),
        ("created:2026-01-10T09:00:00+00:00", {"baseline-cnn"}),
        ("created:>9999-12-31", set()),
        ("created:<=9999-12-31", ALL),
        ("created:>=0001-01-01", ALL),
    ],
)
def test_created_comparisons(db, experiments, query, expected):
    assert set(found(db, query)) == expected


# --- negation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "positive"),
    [
        ("vibration", "vibration"),
        ("misalignment", "misalignment"),
        ('"outer race"', '"outer race"'),
        ("tag:baseline", "tag:baseline"),
        ('tag:"needs review"', 'tag:"needs review"'),
        ("status:completed", "status:completed"),
        ("model:cnn1d", "model:cnn1d"),
        ("dataset:cwru", "dataset:cwru"),
        ("metric.accuracy>0.9", "metric.accuracy>0.9"),
        ("metric.epochs=40", "metric.epochs=40"),
        ("created:<2026-01-01", "created:<2026-01-01"),
        ("created:2026-01-10", "created:2026-01-10"),
    ],
)
def test_negation_is_the_complement(db, experiments, query, positive):
    matched = set(found(db, positive))
    assert matched, "the positive term should match something"
    assert set(found(db, f"-{query}")) == ALL - matched


def test_negated_words_alone_still_work(db, experiments):
    assert found(db, "-vibration -misalignment") == ["imbalance-detector"]
    assert store.search(db, "-vibration").total == 3


def test_negated_and_positive_words_together(db, experiments):
    assert found(db, "vibration -bearings") == ["lstm-gearbox"]
    assert set(found(db, 'vibration -"test rig"')) == {"baseline-cnn", "lstm-gearbox"}


def test_a_negated_stop_word_is_dropped(db, experiments):
    assert found(db, "-the") == NEWEST_FIRST
    assert set(found(db, "vibration -the")) == {
        "baseline-cnn",
        "lstm-gearbox",
        "transformer-spectra",
    }


# --- combinations ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("vibration tag:baseline", ["baseline-cnn"]),
        ("vibration -status:failed model:transformer", ["transformer-spectra"]),
        ("misalignment status:cancelled metric.accuracy<0.9", ["cnn-no-augmentation"]),
        ("bearings created:>2026-02-01", ["transformer-spectra"]),
        ('dataset:CWRU -tag:baseline "outer race"', ["resnet-outer-race"]),
        ("tag:production metric.f1>=0.9 -metric.accuracy>0.9", ["imbalance-detector"]),
        ("status:completed -model:cnn1d -model:resnet1d", ["imbalance-detector"]),
        ("vibration status:completed status:failed", []),
    ],
)
def test_terms_combine(db, experiments, query, expected):
    assert found(db, query) == expected


# --- paging ------------------------------------------------------------------


def test_total_counts_every_match_whatever_the_page(db, experiments):
    page = store.search(db, "", limit=2, offset=1)
    assert [hit.experiment.name for hit in page.rows] == NEWEST_FIRST[1:3]
    assert page.total == 6
    text = store.search(db, "vibration", limit=1)
    assert len(text.rows) == 1 and text.total == 3
    assert store.search(db, "vibration", limit=2, offset=2).total == 3


def test_a_page_past_the_end_is_empty_but_still_counts(db, experiments):
    for query, total in (("", 6), ("vibration", 3), ("-vibration tag:baseline", 1)):
        results = store.search(db, query, offset=10)
        assert results.rows == [] and results.total == total
    assert store.search(db, "nothing-matches-this").total == 0


def test_pages_cover_every_match_once(db, experiments):
    pages = [found(db, "", limit=4, offset=offset) for offset in (0, 4)]
    assert pages[0] + pages[1] == NEWEST_FIRST


@pytest.mark.parametrize(
    ("limit", "offset"), [(0, 0), (501, 0), (-1, 0), (10, -1), (True, 0), (10, 1.5)]
)
def test_a_bad_page_is_refused(db, limit, offset):
    with pytest.raises(InvalidInput):
        store.search(db, "", limit=limit, offset=offset)


def test_the_largest_page_is_allowed(db, experiments):
    assert store.search(db, "", limit=500).total == 6


# --- malformed queries -------------------------------------------------------

MALFORMED = [
    # query, position, words in the message
    ('vibration "outer race', 10, "unterminated quote"),
    ('"', 0, "unterminated quote"),
    ('tag:"needs review', 4, "unterminated quote"),
    ("vibration foo:bar", 10, "unknown field 'foo'"),
    ("name:vibration", 0, "unknown field 'name'"),
    ("metric:accuracy>1", 0, "unknown field 'metric'"),
    ("tag:", 4, "missing value for tag"),
    ("status: completed", 7, "missing value for status"),
    ("created:>", 9, "missing value for created"),
    ("metric.accuracy>", 16, "missing value for metric.accuracy"),
    ('tag:""', 5, "empty value for tag"),
    ('model:"   "', 7, "empty value for model"),
    ("metric.accuracy", 15, "expected an operator"),
    ("metric.accuracy!0.9", 15, "expected an operator"),
    ("metric.accuracy=>0.9", 16, "'>0.9' is not a number"),
    ("metric.accuracy>abc", 16, "'abc' is not a number"),
    ("metric.accuracy>0.9.1", 16, "not a number"),
    ("metric.accuracy>nan", 16, "not a number"),
    ("metric.accuracy>1e999", 16, "out of range"),
    ("metric.>0.9", 7, "expected a metric name"),
    ("metric.9lives>1", 7, "expected a metric name"),
    ("created:>2026-02-30", 9, "not an ISO date"),
    ("created:yesterday", 8, "not an ISO date"),
    ("created:<2026-01-01T25:00", 9, "not an ISO date"),
    ('created:>"2026-01-01 x"', 10, "not an ISO date"),
    ("status:done", 7, "unknown status 'done'"),
    ("-", 0, "'-' must be followed"),
    ("vibration -", 10, "'-' must be followed"),
    ("- vibration", 0, "'-' must be followed"),
    ("a\x00b", 1, "not allowed"),
    ("x" * (MAX_QUERY_LENGTH + 1), MAX_QUERY_LENGTH, "longer than"),
]


@pytest.mark.parametrize(("query", "position", "message"), MALFORMED)
def test_a_malformed_query_names_the_position(query, position, message):
    with pytest.raises(InvalidQuery) as caught:
        parse(query)
    assert caught.value.position == position
    assert message in str(caught.value)
    assert f"(at position {position})" in str(caught.value)


@pytest.mark.parametrize(("query", "position", "message"), MALFORMED[::5])
def test_search_raises_invalid_query_before_touching_the_database(
    db, experiments, query, position, message
):
    with pytest.raises(InvalidQuery) as caught:
        store.search(db, query)
    assert caught.value.position == position
    assert found(db, "vibration")  # the session is still usable (PostgreSQL: not aborted)


def test_the_parser_builds_a_typed_tree():
    assert parse(
        'vibrating "outer race" -tag:"needs review" status:Completed model:cnn1d '
        "dataset:cwru metric.f1>=0.9 -created:<2026-01-01"
    ) == Query(
        (
            Word("vibrating"),
            Phrase("outer race"),
            Not(TagIs("needs review")),
            StatusIs(ExperimentStatus.COMPLETED),
            ModelIs("cnn1d"),
            DatasetIs("cwru"),
            MetricCompare("f1", Op.GE, 0.9),
            Not(CreatedCompare(Op.LT, datetime(2026, 1, 1, tzinfo=UTC), whole_day=True)),
        )
    )


def test_phrases_need_no_surrounding_space_and_fields_ignore_case():
    assert parse('a"b c"-d TAG:x Metric.acc<1') == Query(
        (Word("a"), Phrase("b c"), Not(Word("d")), TagIs("x"), MetricCompare("acc", Op.LT, 1.0))
    )
    assert parse('12:30 x.y "http://x"') == Query((Word("12:30"), Word("x.y"), Phrase("http://x")))


def test_a_datetime_with_an_offset_is_converted_to_utc():
    (term,) = parse("created:>2026-01-10T10:00+02:00").clauses
    assert term == CreatedCompare(Op.GT, datetime(2026, 1, 10, 8, 0, tzinfo=UTC), False)


# --- injection ---------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE experiments; --",
    "vibration'; DELETE FROM tags; --",
    'vibration" OR "1"="1',
    "NEAR(",
    "NEAR(vibration bearings)",
    "*",
    "vib*",
    "tag:x' OR '1'='1",
    "model:x') OR 1=1 --",
    'dataset:"x\' UNION SELECT * FROM users --"',
    "status:completed' --",
    "vibration OR bearings",
    "vibration NOT bearings",
    "^vibration",
    "{name notes}: vibration",
    "name : vibration",
    "!!vibration & bearings | misalignment",
    "vibration:*",
    "'vibration' <-> 'bearings'",
    "\\x00 \\' \\\"",
    "metric.accuracy>0; DROP TABLE experiments",
    "created:>2026-01-01'; --",
    "Robert'); DROP TABLE experiments;--",
    "-'; DROP TABLE tags; --",
    "$1 %s %(x)s ? :param",
]


@pytest.mark.parametrize("query", INJECTIONS)
def test_injection_attempts_are_plain_text(db, experiments, query):
    before = fingerprint(db)
    try:
        results = store.search(db, query)
    except InvalidQuery:
        pass
    else:
        assert results.total <= 6
    db.rollback()
    assert fingerprint(db) == before
    assert store.search(db, "").total == 6


def test_an_unbalanced_quote_is_an_invalid_query_not_sql(db, experiments):
    before = fingerprint(db)
    with pytest.raises(InvalidQuery) as caught:
        store.search(db, '" OR 1=1')
    assert caught.value.position == 0
    assert fingerprint(db) == before


def test_fts_syntax_is_searched_as_words(db, experiments):
    assert found(db, "vibration OR misalignment") == []  # OR is a stop word, not an operator
    assert found(db, "NEAR(vibration bearings)") == []  # "near" is a word here
    assert found(db, "vib*") == []  # no prefix search: "vib" is not a word in the notes
    assert found(db, "*") == NEWEST_FIRST


def test_user_text_travels_only_as_parameters(db, engine, experiments):
    marker = "zq'x;--y"
    statements = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        store.search(
            db, f'{marker} -{marker} "{marker} y" tag:{marker} model:{marker} dataset:{marker}'
        )
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert statements
    assert not [s for s in statements if "zq" in s]


# --- saved searches ----------------------------------------------------------


def test_save_search_stores_the_query(db, users):
    ada, _ = users
    saved = store.save_search(db, ada, "  bad bearings ", "bearings -status:failed", pinned=True)
    db.commit()
    assert (saved.user_id, saved.name) == (ada.id, "bad bearings")
    assert saved.query == "bearings -status:failed"
    assert saved.is_pinned and saved.usage_count == 0 and saved.last_used_at is None


def test_save_search_refuses_a_query_that_does_not_parse(db, users):
    with pytest.raises(InvalidQuery) as caught:
        store.save_search(db, users[0], "broken", "tag:")
    assert caught.value.position == 4
    assert db.scalar(select(func.count()).select_from(SavedSearch)) == 0


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, None])
def test_save_search_refuses_a_bad_name(db, users, name):
    with pytest.raises(InvalidInput):
        store.save_search(db, users[0], name, "vibration")


def test_a_duplicate_name_for_the_same_user_is_a_conflict(db, users):
    ada, bob = users
    store.save_search(db, ada, "mine", "vibration")
    with pytest.raises(Conflict, match="mine"):
        store.save_search(db, ada, "mine", "bearings")
    store.save_search(db, bob, "mine", "bearings")  # another user may reuse the name
    db.commit()
    assert db.scalar(select(func.count()).select_from(SavedSearch)) == 2


def test_a_duplicate_saved_concurrently_is_a_conflict(db, engine, users, monkeypatch):
    ada, _ = users
    with Session(engine) as other:
        other.add(SavedSearch(user_id=ada.id, name="race", query="x"))
        other.commit()
    checks = []
    real_check = writes._refuse_taken

    def check_before_the_other_writer(*args, **kwargs):
        checks.append(args)
        if len(checks) > 1:
            real_check(*args, **kwargs)

    monkeypatch.setattr(writes, "_refuse_taken", check_before_the_other_writer)
    with pytest.raises(Conflict):
        store.save_search(db, ada, "race", "vibration")
    store.save_search(db, ada, "after", "vibration")  # the transaction survives
    db.commit()


def test_saved_searches_come_pinned_then_most_used_then_by_name(db, users, experiments):
    ada, bob = users
    for name in ("c-rare", "a-rare", "b-often", "z-pinned"):
        store.save_search(db, ada, name, "vibration", pinned=name == "z-pinned")
    store.save_search(db, bob, "bobs", "vibration")
    often = next(s for s in store.saved_searches(db, ada) if s.name == "b-often")
    store.run_saved_search(db, often)
    store.run_saved_search(db, often)
    db.commit()
    assert [s.name for s in store.saved_searches(db, ada)] == [
        "z-pinned",
        "b-often",
        "a-rare",
        "c-rare",
    ]
    assert [s.name for s in store.saved_searches(db, bob)] == ["bobs"]


def test_run_saved_search_returns_the_results_and_counts_the_use(db, users, experiments):
    saved = store.save_search(db, users[0], "vibration", "vibration -tag:baseline")
    db.commit()
    before = datetime.now(UTC)
    results = store.run_saved_search(db, saved, limit=1)
    assert results.total == 2 and len(results.rows) == 1
    assert results.rows[0].experiment.name in {"lstm-gearbox", "transformer-spectra"}
    store.run_saved_search(db, saved)
    db.commit()
    assert saved.usage_count == 2
    assert before - timedelta(seconds=1) <= saved.last_used_at <= datetime.now(UTC)
    assert not inspect(saved).modified
    db.expire_all()
    stored = db.get(SavedSearch, saved.id)
    assert stored.usage_count == 2 and stored.last_used_at.tzinfo is not None


def test_the_usage_count_is_bumped_in_the_database_not_in_python(db, engine, users, experiments):
    saved = store.save_search(db, users[0], "s", "vibration")
    db.commit()
    db.execute(SavedSearch.__table__.update().values(usage_count=41))  # another writer
    statements = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        store.run_saved_search(db, saved)
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert saved.usage_count == 42
    assert any("usage_count=(saved_searches.usage_count +" in s for s in statements)


def test_run_saved_search_pages(db, users, experiments):
    saved = store.save_search(db, users[0], "all", "")
    assert [h.experiment.name for h in store.run_saved_search(db, saved, 2, 2).rows] == (
        NEWEST_FIRST[2:4]
    )
    with pytest.raises(InvalidInput):
        store.run_saved_search(db, saved, limit=0)
    assert saved.usage_count == 1  # a refused run is not a use


def test_pin_and_unpin(db, users):
    ada, _ = users
    first = store.save_search(db, ada, "a", "vibration")
    second = store.save_search(db, ada, "b", "bearings")
    assert store.pin(db, second) is second and second.is_pinned
    assert [s.name for s in store.saved_searches(db, ada)] == ["b", "a"]
    store.pin(db, second, pinned=False)
    assert [s.name for s in store.saved_searches(db, ada)] == ["a", "b"]
    assert not first.is_pinned


def test_delete_saved_search(db, users):
    ada, _ = users
    saved = store.save_search(db, ada, "gone", "vibration")
    kept = store.save_search(db, ada, "kept", "vibration")
    store.delete_saved_search(db, saved)
    db.commit()
    assert store.saved_searches(db, ada) == [kept]
    store.save_search(db, ada, "gone", "bearings")  # the name is free again


def test_saved_search_functions_take_records_or_their_ids(db, users):
    ada, _ = users
    saved = store.save_search(db, ada.id, "by id", "vibration")
    assert saved.user_id == ada.id
    assert store.saved_searches(db, ada.id) == [saved]
    store.run_saved_search(db, saved.id)
    assert store.pin(db, saved.id) is saved and saved.is_pinned and saved.usage_count == 1
    store.delete_saved_search(db, saved.id)
    db.commit()
    assert store.saved_searches(db, ada) == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda db: store.save_search(db, "ada", "s", "vibration"), InvalidInput),
        (lambda db: store.save_search(db, True, "s", "vibration"), InvalidInput),
        (lambda db: store.save_search(db, 999_999, "s", "vibration"), NotFound),
        (lambda db: store.saved_searches(db, 2**40), NotFound),
        (lambda db: store.run_saved_search(db, None), InvalidInput),
        (lambda db: store.pin(db, 999_999), NotFound),
        (lambda db: store.delete_saved_search(db, 1.0), InvalidInput),
    ],
)
def test_saved_search_functions_name_a_bad_record(db, users, call, error):
    with pytest.raises(error, match=r"user|saved"):
        call(db)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(SavedSearch)) == 0


def test_running_a_saved_search_deleted_meanwhile_is_not_found(db, engine, users):
    saved = store.save_search(db, users[0], "gone soon", "vibration")
    db.commit()
    with engine.begin() as conn:
        conn.execute(SavedSearch.__table__.delete())
    with pytest.raises(NotFound, match="gone soon"):
        store.run_saved_search(db, saved)
