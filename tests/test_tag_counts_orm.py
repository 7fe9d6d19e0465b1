"""usage_count stays exact whoever writes the links: the store, the ORM's unit of
work, bulk statements, raw SQL, the database's cascades; and a session's copy of a
tag follows. The database keeps the count (pfd_db.models.tag_counts), so a
migrated database must count exactly like a create_all one."""

from __future__ import annotations

import random

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from factories import insert_row
from pfd_db import migrations
from pfd_db.engine import make_engine
from pfd_db.models import Experiment, ExperimentTag, Tag
from pfd_db.store.ml import experiments, tags
from probes import run_together


def real_counts(db) -> dict[str, tuple[int, int]]:
    """Each tag's stored usage_count beside the number of its links."""
    db.expire_all()
    links = (
        select(func.count())
        .select_from(ExperimentTag)
        .where(ExperimentTag.tag_id == Tag.id)
        .scalar_subquery()
    )
    return {name: (count, real) for name, count, real in db.execute(
        select(Tag.name, Tag.usage_count, links).order_by(Tag.name)
    )}  # fmt: skip


def make_experiments(engine, n: int) -> list[int]:
    with engine.begin() as conn:
        dataset_id = insert_row(conn, "datasets")
        return [insert_row(conn, "experiments", dataset_id=dataset_id) for _ in range(n)]


# --- the ORM's unit of work ----------------------------------------------------------


def test_links_added_and_deleted_with_the_session_are_counted(engine, db):
    first, second = make_experiments(engine, 2)
    tag = tags.get_or_create_tag(db, "baseline")
    db.add_all([ExperimentTag(experiment_id=first, tag_id=tag.id),
                ExperimentTag(experiment_id=second, tag_id=tag.id)])  # fmt: skip
    db.commit()
    assert tag.usage_count == 2  # the object in the session follows
    assert real_counts(db) == {"baseline": (2, 2)}
    db.delete(db.scalars(select(ExperimentTag).where(ExperimentTag.experiment_id == first)).one())
    db.commit()
    assert real_counts(db) == {"baseline": (1, 1)}


def test_a_new_tag_and_its_links_flushed_together_show_the_count_at_once(engine, db):
    ids = make_experiments(engine, 3)
    tag = Tag(name="fresh", slug="fresh")
    db.add(tag)
    db.add_all([ExperimentTag(experiment_id=i, tag=tag) for i in ids])
    db.flush()
    assert tag.usage_count == 3  # read again after the flush, in the same transaction
    db.rollback()
    assert real_counts(db) == {}


def test_moving_a_link_to_another_tag_moves_the_count(engine, db):
    (experiment_id,) = make_experiments(engine, 1)
    old, new = tags.get_or_create_tag(db, "old"), tags.get_or_create_tag(db, "new")
    link = ExperimentTag(experiment_id=experiment_id, tag_id=old.id)
    db.add(link)
    db.flush()
    link.tag_id = new.id
    db.commit()
    assert (old.usage_count, new.usage_count) == (0, 1)
    assert real_counts(db) == {"new": (1, 1), "old": (0, 0)}


def test_deleting_an_experiment_with_the_session_uncounts_its_links(engine, db):
    ids = make_experiments(engine, 3)
    wear, noisy = tags.get_or_create_tag(db, "wear"), tags.get_or_create_tag(db, "noisy")
    tags.bulk_tag(db, ids, wear)
    tags.bulk_tag(db, ids[:2], noisy)
    db.commit()
    loaded = db.get(Experiment, ids[0])
    assert len(loaded.experiment_tags) == 2  # loaded: the ORM deletes these links itself
    db.delete(loaded)
    db.delete(db.get(Experiment, ids[1]))  # not loaded: the database cascade drops them
    db.commit()
    assert (wear.usage_count, noisy.usage_count) == (1, 0)
    assert real_counts(db) == {"noisy": (0, 0), "wear": (1, 1)}


def test_the_store_delete_and_the_orm_do_not_count_twice(engine, db):
    ids = make_experiments(engine, 2)
    tag = tags.get_or_create_tag(db, "candidate")
    tags.bulk_tag(db, ids, tag)
    db.commit()
    experiments.delete_experiment(db, db.get(Experiment, ids[0]))
    db.commit()
    assert real_counts(db) == {"candidate": (1, 1)}


# --- statements the ORM does not track ---------------------------------------------------


def test_bulk_statements_and_raw_sql_are_counted(engine, db, dialect):
    ids = make_experiments(engine, 4)
    cnn, lstm = tags.get_or_create_tag(db, "cnn"), tags.get_or_create_tag(db, "lstm")
    db.execute(
        ExperimentTag.__table__.insert(),
        [{"experiment_id": i, "tag_id": cnn.id} for i in ids]
        + [{"experiment_id": i, "tag_id": lstm.id} for i in ids[:2]],
    )
    db.execute(text("DELETE FROM experiment_tags WHERE experiment_id = :id"), {"id": ids[3]})
    db.execute(
        update(ExperimentTag)
        .where(ExperimentTag.experiment_id == ids[2])
        .values(tag_id=lstm.id)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    assert real_counts(db) == {"cnn": (2, 2), "lstm": (3, 3)}


def test_experiments_deleted_in_bulk_are_uncounted_by_the_cascade(engine, db):
    ids = make_experiments(engine, 4)
    cnn, lstm = tags.get_or_create_tag(db, "cnn"), tags.get_or_create_tag(db, "lstm")
    tags.bulk_tag(db, ids, cnn)
    tags.bulk_tag(db, ids[1:], lstm)
    db.commit()
    assert (cnn.usage_count, lstm.usage_count) == (4, 3)
    db.execute(delete(Experiment).where(Experiment.id.in_(ids[:3])))
    assert (cnn.usage_count, lstm.usage_count) == (1, 1)  # the session's tags follow
    db.commit()
    assert real_counts(db) == {"cnn": (1, 1), "lstm": (1, 1)}


def test_deleting_a_tag_leaves_the_others_counts_alone(engine, db):
    ids = make_experiments(engine, 2)
    keep, drop = tags.get_or_create_tag(db, "keep"), tags.get_or_create_tag(db, "drop")
    tags.bulk_tag(db, ids, keep)
    tags.bulk_tag(db, ids, drop)
    db.delete(drop)
    db.commit()
    assert real_counts(db) == {"keep": (2, 2)}


def test_store_calls_keep_the_sessions_tags_current_before_commit(engine, db):
    ids = make_experiments(engine, 3)
    tag = tags.get_or_create_tag(db, "cnn")
    assert tag.usage_count == 0
    tags.bulk_tag(db, ids, tag)
    assert tag.usage_count == 3
    tags.untag_experiment(db, ids[0], tag)
    assert tag.usage_count == 2
    tags.detach_all(db, ids)
    assert tag.usage_count == 0


# --- concurrency through every path ---------------------------------------------------------


def test_counts_stay_exact_when_every_path_writes_at_once(engine, db):
    """6 threads on the same 3 tags: store calls on shared experiments, the ORM
    adding and deleting links of its own experiments, and bulk experiment deletes."""
    names = ("cnn", "lstm", "baseline")
    for name in names:
        tags.get_or_create_tag(db, name)
    db.commit()
    tag_ids = list(db.scalars(select(Tag.id)))
    shared = make_experiments(engine, 6)
    own = {worker: make_experiments(engine, 8) for worker in range(6)}

    def work(worker: int) -> int:
        rng = random.Random(worker)
        mine, duplicates = list(own[worker]), 0
        for _ in range(15):
            with Session(engine) as session:
                try:
                    write_once(session, rng, rng.choice(tag_ids), shared, mine)
                    session.commit()
                except IntegrityError:  # the ORM added a link its experiment already had
                    duplicates += 1
        return duplicates

    _, errors = run_together(6, work)
    assert errors == []
    counts = real_counts(db)
    assert {name: used for name, (used, _) in counts.items()} == {
        name: real for name, (_, real) in counts.items()
    }
    assert sum(real for _, real in counts.values()) > 0


def write_once(
    session: Session, rng: random.Random, tag_id: int, shared: list[int], mine: list[int]
) -> None:
    """One change of links by one of the paths, picked at random."""
    path = rng.choice(("store", "orm add", "orm delete", "bulk delete"))
    if path == "store":
        chosen = rng.sample(shared, rng.randint(1, len(shared)))
        change = tags.bulk_tag if rng.random() < 0.5 else tags.bulk_untag
        change(session, chosen, tag_id)
    elif path == "orm add" and mine:
        session.add(ExperimentTag(experiment_id=rng.choice(mine), tag_id=tag_id))
    elif path == "orm delete":
        link = session.scalars(
            select(ExperimentTag)
            .where(ExperimentTag.experiment_id.in_(mine))
            .order_by(ExperimentTag.id)
            .limit(1)
            .with_for_update()
        ).first()
        if link is not None:
            session.delete(link)
    elif path == "bulk delete" and mine:
        session.execute(delete(Experiment).where(Experiment.id == mine.pop()))


# --- the migration ------------------------------------------------------------------------


def count_triggers(engine, dialect: str) -> list[tuple[str, ...]]:
    """The triggers (and, on PostgreSQL, the function) that keep the counts."""
    if dialect == "sqlite":
        query = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = 'experiment_tags' ORDER BY name"
        )
    else:
        query = (
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = 'experiment_tags'::regclass AND NOT tgisinternal "
            "UNION ALL SELECT proname, prosrc FROM pg_proc WHERE proname = 'count_tag_links' "
            "ORDER BY 1"
        )
    with engine.connect() as conn:
        return [tuple(" ".join(str(v).split()) for v in row) for row in conn.execute(text(query))]


def test_the_migrated_count_triggers_equal_the_models_ones(fresh_url, engine, dialect):
    fresh = make_engine(fresh_url)
    try:
        migrations.upgrade(fresh)
        migrated = count_triggers(fresh, dialect)
        assert migrated == count_triggers(engine, dialect)  # the create_all database
        assert len(migrated) == (3 if dialect == "sqlite" else 4)
        migrations.downgrade(fresh, "0003")
        assert count_triggers(fresh, dialect) == []
    finally:
        fresh.dispose()


def test_migrating_recounts_every_tag_then_counts_new_links(fresh_url):
    fresh = make_engine(fresh_url)
    try:
        migrations.upgrade(fresh, "0003")
        with fresh.begin() as conn:
            ids = make_experiments_on(conn, 3)
            drifted = insert_row(conn, "tags", name="drifted", slug="drifted", usage_count=7)
            unused = insert_row(conn, "tags", name="unused", slug="unused", usage_count=2)
            for i in ids[:2]:
                insert_row(conn, "experiment_tags", experiment_id=i, tag_id=drifted)
        migrations.upgrade(fresh)
        with fresh.begin() as conn:
            insert_row(conn, "experiment_tags", experiment_id=ids[2], tag_id=unused)
        with Session(fresh) as session:
            assert real_counts(session) == {"drifted": (2, 2), "unused": (1, 1)}
    finally:
        fresh.dispose()


def make_experiments_on(conn, n: int) -> list[int]:
    dataset_id = insert_row(conn, "datasets")
    return [insert_row(conn, "experiments", dataset_id=dataset_id) for _ in range(n)]
