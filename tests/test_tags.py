"""Tags: creation, slugs and colours, tagging one or many experiments, suggestions,
and exact usage counts under concurrent writers, on both dialects."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from factories import insert_row
from pfd_db.errors import Conflict, InvalidInput, NotFound
from pfd_db.models import Experiment, ExperimentTag, Tag, User
from pfd_db.store.ml import tags
from probes import run_together

TAG_NAMES = ("cnn", "baseline", "Deep Learning", "deep-learning", "tuned")
CHURN_ROUNDS = 40


@pytest.fixture
def experiments(db, engine) -> list[Experiment]:
    return [db.get(Experiment, i) for i in make_experiments(engine, 5)]


def make_experiments(engine, count: int) -> list[int]:
    with engine.begin() as conn:
        dataset_id = insert_row(conn, "datasets")
        return [insert_row(conn, "experiments", dataset_id=dataset_id) for _ in range(count)]


def links_of(db, tag: Tag) -> set[int]:
    return set(
        db.scalars(select(ExperimentTag.experiment_id).where(ExperimentTag.tag_id == tag.id))
    )


def stored_usage(db) -> dict[str, tuple[int, int]]:
    """``{tag name: (usage_count, real number of links)}`` as stored."""
    query = (
        select(Tag.name, Tag.usage_count, func.count(ExperimentTag.id))
        .outerjoin(ExperimentTag, ExperimentTag.tag_id == Tag.id)
        .group_by(Tag.id, Tag.name, Tag.usage_count)
    )
    return {name: (usage, real) for name, usage, real in db.execute(query)}


def count_tags(db) -> int:
    return db.scalar(select(func.count()).select_from(Tag))


# --- slugs and creation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Deep Learning", "deep-learning"),
        ("  CNN / 1D  ", "cnn-1d"),
        ("Über-Modell", "uber-modell"),
        ("a__b--c", "a-b-c"),
        ("ResNet50!", "resnet50"),
        ("Größe", "grosse"),
        ("日本語", "ri-ben-yu"),
        ("Привет мир", "privet-mir"),
    ],
)
def test_slugify(name, slug):
    assert tags.slugify(name) == slug


@pytest.mark.parametrize(("name", "slug"), [("Größe", "grosse"), ("日本語", "ri-ben-yu")])
def test_non_english_names_make_tags_with_ascii_slugs(db, name, slug):
    tag = tags.get_or_create_tag(db, name)
    db.commit()
    assert (tag.name, tag.slug) == (name, slug)
    assert tags.get_or_create_tag(db, name).id == tag.id
    assert [t.name for t in tags.suggest_tags(db, slug[:3])] == [name]


@pytest.mark.parametrize(("first", "second"), [("Größe", "Grosse"), ("日本語", "ri ben yu")])
def test_a_name_with_another_tags_slug_is_a_conflict_naming_that_tag(db, first, second):
    tags.get_or_create_tag(db, first)
    db.commit()
    with pytest.raises(Conflict, match=f"the tag {first!r}"):
        tags.get_or_create_tag(db, second)
    db.rollback()
    assert [t.name for t in db.scalars(select(Tag))] == [first]


@pytest.mark.parametrize("variant", ["GRÖSSE", "größe", " Größe! "])
def test_a_name_differing_only_in_case_and_punctuation_is_the_same_tag(db, variant):
    tag = tags.get_or_create_tag(db, "Größe")
    assert tags.get_or_create_tag(db, variant).id == tag.id
    assert count_tags(db) == 1


def test_slug_never_ends_in_a_separator_when_cut_to_length():
    assert tags.slugify("a" * 49 + " b") == "a" * 49


def test_get_or_create_tag_creates_a_tag(db):
    owner = User(username="ada", email="ada@example.com")
    db.add(owner)
    db.flush()
    tag = tags.get_or_create_tag(db, "  Deep Learning ", color="#A0B1C2", created_by=owner)
    db.commit()
    assert (tag.name, tag.slug, tag.color, tag.created_by, tag.usage_count) == (
        "Deep Learning",
        "deep-learning",
        "#a0b1c2",
        owner.id,
        0,
    )


def test_get_or_create_tag_returns_the_tag_with_the_same_slug(db):
    first = tags.get_or_create_tag(db, "Deep Learning", color="#ffffff")
    again = tags.get_or_create_tag(db, "Deep Learning")
    same_slug = tags.get_or_create_tag(db, "deep-learning", color="#000000")
    db.commit()
    assert again.id == same_slug.id == first.id
    assert same_slug.name == "Deep Learning" and same_slug.color == "#ffffff"
    assert count_tags(db) == 1


def test_get_or_create_tag_finds_a_tag_stored_with_another_slug(db):
    db.add(Tag(name="ML", slug="machine-learning"))
    db.flush()
    assert tags.get_or_create_tag(db, "ML").slug == "machine-learning"
    assert count_tags(db) == 1


@pytest.mark.parametrize("name", ["", "   ", "!!!", "---", "x" * 51, None, 7])
def test_get_or_create_tag_refuses_names_without_a_slug(db, name):
    with pytest.raises(InvalidInput, match="name"):
        tags.get_or_create_tag(db, name)
    db.rollback()
    assert count_tags(db) == 0


@pytest.mark.parametrize("color", ["red", "#12345", "#1234567", "#GGGGGG", "123456", " #123456", 7])
def test_get_or_create_tag_refuses_colours_not_rrggbb(db, color):
    with pytest.raises(InvalidInput, match="color"):
        tags.get_or_create_tag(db, "cnn", color=color)
    db.rollback()
    assert count_tags(db) == 0


def test_concurrent_creation_of_one_tag_makes_one_row(db, engine):
    def create(_index: int) -> int:
        with Session(engine, expire_on_commit=False) as session:
            tag = tags.get_or_create_tag(session, "Shared Tag")
            session.commit()
            return tag.id

    ids, errors = run_together(8, create)
    assert errors == []
    assert len(set(ids)) == 1
    assert count_tags(db) == 1


# --- tagging ------------------------------------------------------------------------


def test_tag_experiment_is_idempotent(db, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    assert tags.tag_experiment(db, experiments[0], tag) is True
    assert tags.tag_experiment(db, experiments[0], tag) is False
    db.commit()
    assert links_of(db, tag) == {experiments[0].id}
    assert tag.usage_count == 1
    assert stored_usage(db) == {"cnn": (1, 1)}


def test_untag_experiment_is_idempotent(db, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    tags.tag_experiment(db, experiments[0], tag)
    tags.tag_experiment(db, experiments[1], tag)
    assert tags.untag_experiment(db, experiments[0], tag) is True
    assert tags.untag_experiment(db, experiments[0], tag) is False
    db.commit()
    assert links_of(db, tag) == {experiments[1].id}
    assert tag.usage_count == 1
    assert stored_usage(db) == {"cnn": (1, 1)}


def test_tag_experiment_records_who_added_it(db, experiments):
    owner = User(username="ada", email="ada@example.com")
    db.add(owner)
    tag = tags.get_or_create_tag(db, "cnn")
    tags.tag_experiment(db, experiments[0], tag, added_by=owner)
    link = db.scalars(select(ExperimentTag)).one()
    assert link.added_by == owner.id


def test_tagging_refreshes_the_collections_the_session_holds(db, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    assert experiments[0].experiment_tags == [] and tag.experiment_tags == []
    tags.tag_experiment(db, experiments[0], tag)
    assert [link.tag_id for link in experiments[0].experiment_tags] == [tag.id]
    assert [link.experiment_id for link in tag.experiment_tags] == [experiments[0].id]
    tags.untag_experiment(db, experiments[0], tag)
    assert experiments[0].experiment_tags == [] and tag.experiment_tags == []


def test_bulk_tag_counts_only_new_links(db, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    tags.bulk_tag(db, experiments[:2], tag)
    everything = [*experiments, experiments[0].id, experiments[3]]  # objects, ids, repeats
    assert tags.bulk_tag(db, everything, tag) == 3
    db.commit()
    assert links_of(db, tag) == {e.id for e in experiments}
    assert stored_usage(db) == {"cnn": (5, 5)}


def test_bulk_untag_counts_only_removed_links(db, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    tags.bulk_tag(db, experiments[:3], tag)
    assert tags.bulk_untag(db, [e.id for e in experiments[1:]], tag) == 2
    db.commit()
    assert links_of(db, tag) == {experiments[0].id}
    assert stored_usage(db) == {"cnn": (1, 1)}


def test_bulk_operations_on_nothing_change_nothing(db):
    tag = tags.get_or_create_tag(db, "cnn")
    assert tags.bulk_tag(db, [], tag) == 0
    assert tags.bulk_untag(db, [], tag) == 0
    tags.detach_all(db, [])
    db.commit()
    assert stored_usage(db) == {"cnn": (0, 0)}


def test_bulk_tag_skips_experiments_that_do_not_exist(db, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    assert tags.bulk_tag(db, [experiments[0].id, 999_999], tag) == 1
    db.commit()
    assert stored_usage(db) == {"cnn": (1, 1)}


def test_bulk_operations_work_in_batches(db, experiments, monkeypatch):
    monkeypatch.setattr(tags, "BATCH", 2)
    tag = tags.get_or_create_tag(db, "cnn")
    assert tags.bulk_tag(db, experiments, tag) == 5
    assert tags.bulk_untag(db, experiments[:3], tag) == 3
    tags.bulk_tag(db, experiments, tags.get_or_create_tag(db, "baseline"))
    tags.detach_all(db, [e.id for e in experiments])
    db.commit()
    assert stored_usage(db) == {"cnn": (0, 0), "baseline": (0, 0)}


def test_bulk_tag_flushes_new_experiments_first(db, experiments):
    fresh = Experiment(
        name="fresh", model_type="cnn", dataset_id=experiments[0].dataset_id, config={}
    )
    db.add(fresh)
    tag = tags.get_or_create_tag(db, "cnn")
    assert tags.bulk_tag(db, [fresh], tag) == 1
    assert links_of(db, tag) == {fresh.id}


def test_bulk_tag_refuses_things_that_are_not_experiments(db):
    tag = tags.get_or_create_tag(db, "cnn")
    with pytest.raises(InvalidInput, match="experiments"):
        tags.bulk_tag(db, ["7"], tag)


def test_tagging_with_a_deleted_tag_raises_not_found(db, engine, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    db.commit()
    with engine.begin() as conn:
        conn.execute(Tag.__table__.delete())
    with pytest.raises(NotFound, match="tag"):
        tags.tag_experiment(db, experiments[0], tag)


# --- detaching before a delete ---------------------------------------------------------


def test_detach_all_removes_links_and_lowers_counts(db, experiments):
    cnn, baseline, tuned = (tags.get_or_create_tag(db, n) for n in ("cnn", "baseline", "tuned"))
    tags.bulk_tag(db, experiments, cnn)
    tags.bulk_tag(db, experiments[:2], baseline)
    tags.bulk_tag(db, experiments[3:], tuned)
    leaving = [experiments[0].id, experiments[1].id, experiments[1].id]
    tags.detach_all(db, leaving)
    db.commit()
    assert (cnn.usage_count, baseline.usage_count, tuned.usage_count) == (3, 0, 2)
    assert stored_usage(db) == {"cnn": (3, 3), "baseline": (0, 0), "tuned": (2, 2)}
    assert links_of(db, cnn) == {e.id for e in experiments[2:]}


def test_experiments_delete_cleanly_after_detach_all(db, experiments):
    tag = tags.get_or_create_tag(db, "cnn")
    tags.bulk_tag(db, experiments, tag)
    assert len(experiments[0].experiment_tags) == 1  # loaded into the session
    tags.detach_all(db, [experiments[0].id])
    db.delete(experiments[0])
    db.commit()
    assert stored_usage(db) == {"cnn": (4, 4)}


# --- popular and suggested --------------------------------------------------------------


@pytest.fixture
def used_tags(db, engine):
    """Tags used by 3 (cnn), 2 (baseline, bearing), 1 (a_b) and 0 (axb) experiments."""
    ids = make_experiments(engine, 3)
    for name, uses in (("cnn", 3), ("bearing", 2), ("baseline", 2), ("a_b", 1), ("axb", 0)):
        tags.bulk_tag(db, ids[:uses], tags.get_or_create_tag(db, name))
    db.commit()


def test_popular_tags_are_ordered_by_use_then_name(db, used_tags):
    assert [t.name for t in tags.popular_tags(db)] == ["cnn", "baseline", "bearing", "a_b", "axb"]
    assert [t.name for t in tags.popular_tags(db, limit=2)] == ["cnn", "baseline"]


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "3"])
def test_popular_and_suggested_tags_refuse_bad_limits(db, limit):
    with pytest.raises(InvalidInput, match="limit"):
        tags.popular_tags(db, limit=limit)
    with pytest.raises(InvalidInput, match="limit"):
        tags.suggest_tags(db, "c", limit=limit)


def test_suggest_tags_matches_name_prefixes_in_any_case(db, used_tags):
    assert [t.name for t in tags.suggest_tags(db, "B")] == ["baseline", "bearing"]
    assert [t.name for t in tags.suggest_tags(db, "bA")] == ["baseline"]
    assert [t.name for t in tags.suggest_tags(db, "b", limit=1)] == ["baseline"]
    assert tags.suggest_tags(db, "nn") == []


def test_suggest_tags_matches_slug_prefixes(db):
    tags.get_or_create_tag(db, "Deep Learning")
    assert [t.slug for t in tags.suggest_tags(db, "DEEP-L")] == ["deep-learning"]


def test_suggest_tags_takes_wildcards_literally(db, used_tags):
    assert [t.name for t in tags.suggest_tags(db, "a_")] == ["a_b"]
    assert tags.suggest_tags(db, "%") == []
    assert tags.suggest_tags(db, "/") == []


def test_suggest_tags_with_an_empty_prefix_gives_the_most_used(db, used_tags):
    assert [t.name for t in tags.suggest_tags(db, " ", limit=2)] == ["cnn", "baseline"]


def test_suggest_tags_refuses_a_prefix_that_is_not_text(db):
    with pytest.raises(InvalidInput, match="prefix"):
        tags.suggest_tags(db, None)


# --- concurrency --------------------------------------------------------------------------


def churn(engine, experiment_ids: list[int], seed: int, start: Callable[[], object]) -> list[str]:
    """Tag and untag the shared experiments with overlapping tags for a while,
    one committed operation at a time; returns the errors seen."""
    rng = random.Random(seed)
    errors: list[str] = []
    start()
    for _ in range(CHURN_ROUNDS):
        with Session(engine, expire_on_commit=False) as session:
            try:
                churn_once(session, rng, experiment_ids)
                session.commit()
            except Exception as exc:
                errors.append(repr(exc))
    return errors


def churn_once(session: Session, rng: random.Random, experiment_ids: list[int]) -> None:
    tag = tags.get_or_create_tag(session, rng.choice(TAG_NAMES))
    chosen = rng.sample(experiment_ids, rng.randint(1, len(experiment_ids)))
    one = session.get(Experiment, chosen[0])
    assert one is not None
    operation = rng.choice(("tag", "untag", "bulk_tag", "bulk_untag", "bulk_tag", "detach"))
    if operation == "tag":
        tags.tag_experiment(session, one, tag)
    elif operation == "untag":
        tags.untag_experiment(session, one, tag)
    elif operation == "bulk_tag":
        tags.bulk_tag(session, chosen, tag)
    elif operation == "bulk_untag":
        tags.bulk_untag(session, chosen, tag)
    else:
        tags.detach_all(session, chosen[:2])


def churn_in_process(url: str, experiment_ids: list[int], seed: int, barrier, results) -> None:
    """``churn`` in a process of its own, with its own engine; errors go to ``results``."""
    from pfd_db.engine import make_engine

    engine = make_engine(url)
    try:
        results.put(churn(engine, experiment_ids, seed, barrier.wait))
    except BaseException as exc:
        results.put([repr(exc)])
    finally:
        engine.dispose()


def churn_on_threads(engine, experiment_ids: list[int], count: int) -> list[str]:
    outcomes, errors = run_together(
        count, lambda i: churn(engine, experiment_ids, seed=i, start=lambda: None)
    )
    return [repr(e) for e in errors] + [error for seen in outcomes if seen for error in seen]


def churn_in_processes(db_url: str, experiment_ids: list[int], count: int) -> list[str]:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    workers = [
        context.Process(target=churn_in_process, args=(db_url, experiment_ids, i, barrier, results))
        for i in range(count)
    ]
    for worker in workers:
        worker.start()
    seen = [error for _ in workers for error in results.get(timeout=300)]
    for worker in workers:
        worker.join(timeout=60)
    return seen + [f"exit code {w.exitcode}" for w in workers if w.exitcode != 0]


def test_concurrent_tagging_keeps_usage_counts_exact(db, engine, db_url, dialect):
    """8 threads (PostgreSQL) or 4 processes (SQLite) tag and untag the same
    experiments with overlapping tags; every count matches its links after."""
    experiment_ids = make_experiments(engine, 6)
    if dialect == "postgresql":
        errors = churn_on_threads(engine, experiment_ids, count=8)
    else:
        errors = churn_in_processes(db_url, experiment_ids, count=4)
    assert errors == []
    usage = stored_usage(db)
    assert len(usage) == 4  # "Deep Learning" and "deep-learning" are one tag
    assert {name: used for name, (used, _) in usage.items()} == {
        name: real for name, (_, real) in usage.items()
    }
