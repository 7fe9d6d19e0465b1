"""Dataset generation and import jobs on both dialects (their races:
test_status_machine.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput, InvalidTransition
from pfd_db.models import DatasetGeneration, DatasetImport, JobStatus
from pfd_db.store.ml import jobs
from probes import statements


@pytest.fixture(params=["generation", "import"])
def job(request, db):
    create = jobs.create_generation if request.param == "generation" else jobs.create_import
    made = create(db, "nightly", {"faults": ["wear"], "n": 100}, celery_task_id="task-1")
    db.commit()
    return made


def test_a_new_job_is_pending_at_zero(job):
    assert (job.status, job.progress) == (JobStatus.PENDING, 0)
    assert job.config == {"faults": ["wear"], "n": 100}


def test_progress_moves_forward_only(db, job):
    jobs.start(db, job)
    jobs.update_progress(db, job, 10)
    jobs.update_progress(db, job, 10)
    jobs.update_progress(db, job, 55)
    with pytest.raises(InvalidInput, match="backwards"):
        jobs.update_progress(db, job, 20)
    for bad in (-1, 101, 3.5, True):
        with pytest.raises(InvalidInput, match="progress"):
            jobs.update_progress(db, job, bad)
    db.commit()
    db.expire_all()
    assert job.progress == 55


def test_progress_needs_a_running_job(db, job):
    with pytest.raises(InvalidInput, match="not running"):
        jobs.update_progress(db, job, 5)


def test_complete_records_duration_counts_and_output(db, job):
    jobs.start(db, job)
    counts = (
        {"num_signals": 1430, "num_faults": 11}
        if isinstance(job, DatasetGeneration)
        else {"num_signals": 1430, "num_files": 7}
    )
    jobs.complete(db, job, duration_seconds=12.5, output_path="out/ds.h5", **counts)
    db.commit()
    db.expire_all()
    assert (job.status, job.progress, job.duration_seconds) == (JobStatus.COMPLETED, 100, 12.5)
    assert job.output_path == "out/ds.h5"
    assert all(getattr(job, name) == value for name, value in counts.items())


def test_complete_is_one_statement_and_the_job_shows_what_it_stored(db, engine, job):
    jobs.start(db, job)
    db.commit()
    with statements(engine) as sent:
        jobs.complete(db, job, duration_seconds=3, num_signals=5)
    assert len(sent) == 1 and sent[0].lstrip().startswith("UPDATE")
    assert (job.status, job.progress, job.duration_seconds, job.num_signals) == (
        JobStatus.COMPLETED,
        100,
        3.0,
        5,
    )


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"duration_seconds": float("nan")}, "duration_seconds"),
        ({"duration_seconds": float("inf")}, "duration_seconds"),
        ({"duration_seconds": -1}, "duration_seconds"),
        ({"duration_seconds": "3"}, "duration_seconds"),
        ({"duration_seconds": 1, "num_signals": -1}, "num_signals"),
        ({"duration_seconds": 1, "num_signals": 2**31}, "num_signals"),
        ({"duration_seconds": 1, "num_signals": 2.0}, "num_signals"),
        ({"duration_seconds": 1, "output_path": "x" * 501}, "output_path"),
    ],
)
def test_complete_refuses_bad_results_naming_the_field_and_writes_nothing(
    db, engine, job, options, field
):
    jobs.start(db, job)
    db.commit()
    with statements(engine) as sent, pytest.raises(InvalidInput, match=field):
        jobs.complete(db, job, **options)
    assert sent == []
    assert (job.status, job.progress, job.duration_seconds) == (JobStatus.RUNNING, 0, None)


def test_progress_of_a_job_cancelled_meanwhile_names_its_status(db, engine, job):
    jobs.start(db, job)
    db.commit()
    with Session(engine) as other:
        jobs.cancel(other, other.get(type(job), job.id))
        other.commit()
    with pytest.raises(InvalidTransition, match="is cancelled, not running"):
        jobs.update_progress(db, job, 50)
    assert (job.status, job.progress) == (JobStatus.CANCELLED, 0)  # read again


def test_complete_rejects_counts_of_the_other_kind(db, job):
    jobs.start(db, job)
    wrong = "num_files" if isinstance(job, DatasetGeneration) else "num_faults"
    with pytest.raises(InvalidInput, match=wrong):
        jobs.complete(db, job, duration_seconds=1.0, **{wrong: 3})
    assert job.status is JobStatus.RUNNING


def test_fail_keeps_the_error_message(db, job):
    jobs.start(db, job)
    jobs.fail(db, job, "HDF5 file is truncated")
    assert (job.status, job.error_message) == (JobStatus.FAILED, "HDF5 file is truncated")


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], JobStatus.COMPLETED),
        ([], JobStatus.FAILED),
        ([JobStatus.RUNNING, JobStatus.COMPLETED], JobStatus.RUNNING),
        ([JobStatus.CANCELLED], JobStatus.RUNNING),
        ([JobStatus.RUNNING, JobStatus.FAILED], JobStatus.CANCELLED),
    ],
)
def test_illegal_transitions_are_refused(db, job, path, target):
    for status in path:
        jobs._move(db, job, status)
    with pytest.raises(InvalidTransition, match=f"to {target.value}"):
        jobs._move(db, job, target)


def test_legal_transitions(db, job):
    jobs.cancel(db, job)
    assert job.status is JobStatus.CANCELLED


@pytest.mark.parametrize(
    ("name", "config"), [("", {}), ("x" * 256, {}), ("ok", ["not", "an", "object"])]
)
def test_bad_jobs_are_refused_before_anything_is_written(db, name, config):
    with pytest.raises(InvalidInput):
        jobs.create_import(db, name, config)
    db.rollback()
    total = select(func.count()).select_from(DatasetImport)
    assert db.scalar(total) == 0
