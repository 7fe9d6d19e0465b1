"""usage_count stays exact when links come and go through the ORM, not the store."""

from __future__ import annotations

from sqlalchemy import func, select

from factories import insert_row
from pfd_db.models import Experiment, ExperimentTag, Tag
from pfd_db.store import experiments, tags


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
    assert real_counts(db) == {"noisy": (0, 0), "wear": (1, 1)}


def test_the_store_delete_and_the_orm_events_do_not_count_twice(engine, db):
    ids = make_experiments(engine, 2)
    tag = tags.get_or_create_tag(db, "candidate")
    tags.bulk_tag(db, ids, tag)
    db.commit()
    experiments.delete_experiment(db, db.get(Experiment, ids[0]))
    db.commit()
    assert real_counts(db) == {"candidate": (1, 1)}
