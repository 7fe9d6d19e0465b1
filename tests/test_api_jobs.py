"""Data jobs over HTTP on both dialects: list and read generations and imports;
workers with write scope start them, report progress, complete, fail or cancel
them; auth and error mappings."""

from __future__ import annotations

import pytest

from api_support import auth, problem

pytest_plugins = ["api_support"]

BASE = "/api/v1/jobs"


@pytest.fixture
def jobs_made(db):
    """Two generations and one import, pending."""
    from pfd_db.store.ml import jobs

    made = {
        "generations": [jobs.create_generation(db, f"gen-{n}", {"n": n}).id for n in range(2)],
        "imports": [jobs.create_import(db, "import-0", {"dir": "/data"}, "task-1").id],
    }
    db.commit()
    return made


def test_list_and_read_each_kind(client, user_key, jobs_made):
    reader = user_key(scopes=("read",), role="viewer")  # jobs have no owner
    generations = client.get(f"{BASE}/generations", headers=auth(reader)).json()
    assert [j["id"] for j in generations["items"]] == sorted(jobs_made["generations"])[::-1]
    assert {j["kind"] for j in generations["items"]} == {"generations"}
    first = client.get(f"{BASE}/generations", params={"limit": 1}, headers=auth(reader)).json()
    second = client.get(
        f"{BASE}/generations",
        params={"limit": 1, "cursor": first["next_cursor"]},
        headers=auth(reader),
    ).json()
    assert [j["id"] for j in first["items"] + second["items"]] == [
        j["id"] for j in generations["items"]
    ]
    assert second["next_cursor"] is None
    imported = client.get(f"{BASE}/imports/{jobs_made['imports'][0]}", headers=auth(reader)).json()
    assert imported["name"] == "import-0" and imported["celery_task_id"] == "task-1"
    assert imported["status"] == "pending" and imported["progress"] == 0
    assert imported["num_files"] is None and imported["num_faults"] is None


def test_a_worker_runs_a_job_to_completion(client, user_key, jobs_made):
    worker = user_key()
    job = f"{BASE}/generations/{jobs_made['generations'][0]}"
    assert client.post(f"{job}/start", headers=auth(worker)).json()["status"] == "running"
    problem(client.post(f"{job}/start", headers=auth(worker)), 422)
    assert (
        client.post(f"{job}/progress", json={"progress": 40}, headers=auth(worker)).json()[
            "progress"
        ]
        == 40
    )
    problem(
        client.post(f"{job}/progress", json={"progress": 30}, headers=auth(worker)), 422, "progress"
    )
    problem(
        client.post(f"{job}/progress", json={"progress": 101}, headers=auth(worker)),
        422,
        "progress",
    )
    problem(
        client.post(
            f"{job}/complete", json={"duration_seconds": 3, "num_files": 2}, headers=auth(worker)
        ),
        422,
    )
    done = client.post(
        f"{job}/complete",
        json={"duration_seconds": 3.5, "output_path": "out.h5", "num_signals": 10, "num_faults": 2},
        headers=auth(worker),
    ).json()
    assert done["status"] == "completed" and done["progress"] == 100
    assert done["num_signals"] == 10 and done["num_faults"] == 2 and done["output_path"] == "out.h5"
    problem(client.post(f"{job}/cancel", headers=auth(worker)), 422)


def test_fail_and_cancel(client, user_key, jobs_made):
    worker = user_key()
    failing = f"{BASE}/generations/{jobs_made['generations'][1]}"
    client.post(f"{failing}/start", headers=auth(worker))
    failed = client.post(
        f"{failing}/fail", json={"error_message": "disk full"}, headers=auth(worker)
    )
    assert failed.json()["status"] == "failed" and failed.json()["error_message"] == "disk full"
    problem(
        client.post(f"{failing}/fail", json={"error_message": ""}, headers=auth(worker)),
        422,
        "error_message",
    )
    cancelled = client.post(
        f"{BASE}/imports/{jobs_made['imports'][0]}/cancel", headers=auth(worker)
    )
    assert cancelled.json()["status"] == "cancelled"


def test_auth_and_unknown_jobs(client, user_key, jobs_made):
    job = f"{BASE}/generations/{jobs_made['generations'][0]}"
    problem(client.get(f"{BASE}/generations"), 401)
    problem(client.post(f"{job}/start"), 401)
    problem(client.post(f"{job}/start", headers=auth(user_key(scopes=("read",)))), 403)
    problem(client.post(f"{job}/start", headers=auth(user_key(role="viewer"))), 403)
    key = user_key()
    problem(client.get(f"{BASE}/generations/99999", headers=auth(key)), 404)
    problem(client.post(f"{BASE}/imports/99999/start", headers=auth(key)), 404)
    problem(client.get(f"{BASE}/exports", headers=auth(key)), 422, "kind")
    problem(
        client.get(f"{BASE}/imports", params={"cursor": "MA"}, headers=auth(key)), 422, "cursor"
    )  # 0
