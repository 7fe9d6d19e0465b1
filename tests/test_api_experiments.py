"""Experiments over HTTP on both dialects: create, search, read, delete, status moves
and tags; who sees what; every auth case and error mapping of the routes."""

from __future__ import annotations

import pytest

from api_support import auth, problem

pytest_plugins = ["api_support"]

BASE = "/api/v1/experiments"


@pytest.fixture
def dataset_id(db):
    """A shared dataset (no owner), committed."""
    from pfd_db.store.ml import datasets

    dataset = datasets.register_dataset(db, "bearings", ["normal", "oil_whirl"], ["low"], "d.h5")
    db.commit()
    return dataset.id


def new(client, key, dataset, name="run-1", **extra):
    body = {"name": name, "model_type": "cnn1d", "dataset": dataset, "config": {"lr": 0.01}}
    return client.post(BASE, json={**body, **extra}, headers=auth(key))


def test_create_read_list_delete(client, user_key, dataset_id):
    key = user_key()
    created = new(client, key, dataset_id, hyperparameters={"depth": 4}, notes="first try")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "run-1" and body["status"] == "pending"
    assert body["dataset_id"] == dataset_id and body["created_by"] == key.user_id
    assert body["hyperparameters"] == {"depth": 4} and body["notes"] == "first try"
    assert body["created_at"].endswith(("Z", "+00:00"))

    got = client.get(f"{BASE}/{body['id']}", headers=auth(key))
    assert got.status_code == 200 and got.json() == body
    listed = client.get(BASE, headers=auth(key)).json()
    assert [item["id"] for item in listed["items"]] == [body["id"]]
    assert listed["next_cursor"] is None

    assert client.delete(f"{BASE}/{body['id']}", headers=auth(key)).status_code == 204
    problem(client.get(f"{BASE}/{body['id']}", headers=auth(key)), 404)


def test_dataset_by_name_and_unknown_dataset(client, user_key, dataset_id):
    key = user_key()
    created = new(client, key, "bearings")
    assert created.status_code == 201 and created.json()["dataset_id"] == dataset_id
    problem(new(client, key, "no-such-dataset", name="run-2"), 404)
    problem(new(client, key, 999_999, name="run-3"), 404)
    problem(new(client, key, 0, name="run-4"), 404)
    problem(new(client, key, 2**63, name="run-5"), 404)


def test_duplicate_name_is_409(client, user_key, dataset_id):
    key = user_key()
    assert new(client, key, dataset_id).status_code == 201
    body = problem(new(client, key, dataset_id), 409)
    assert "run-1" in body["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"config": [1, 2]}, "config"),
        ({"model_type": None}, "model_type"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_422_naming_the_field(client, user_key, dataset_id, change, field):
    problem(new(client, user_key(), dataset_id, **change), 422, field)


def test_store_refusals_name_the_field(client, user_key, dataset_id):
    key = user_key()
    problem(new(client, key, dataset_id, name="   "), 422, "name")
    problem(new(client, key, dataset_id, name="a\x00b"), 422, "name")
    problem(new(client, key, dataset_id, notes="a\x00b"), 422, "notes")
    problem(new(client, key, dataset_id, config={"a": "\x00"}), 422, "config")
    problem(client.get(BASE, params={"q": "a\x00b"}, headers=auth(key)), 422, "q")
    assert client.get(BASE, headers=auth(key)).json()["items"] == []


def test_nan_and_infinity_are_refused(client, user_key, dataset_id):
    key = user_key()
    for number in ("NaN", "Infinity", "-Infinity"):
        config = '{"lr": ' + number + "}"
        raw = f'{{"name": "n", "model_type": "m", "dataset": {dataset_id}, "config": {config}}}'
        response = client.post(
            BASE, content=raw, headers={**auth(key), "content-type": "application/json"}
        )
        problem(response, 422)
    assert client.get(BASE, headers=auth(key)).json()["items"] == []


def test_auth_cases(client, user_key, dataset_id):
    problem(client.get(BASE), 401)
    problem(client.post(BASE, json={}), 401)
    assert "www-authenticate" in client.get(f"{BASE}/1").headers
    reader = user_key(scopes=("read",))
    problem(new(client, reader, dataset_id), 403)
    viewer = user_key(role="viewer")  # write scope, but a viewer may not change anything
    problem(new(client, viewer, dataset_id), 403)
    assert client.get(BASE, headers=auth(reader)).status_code == 200
    problem(client.get(BASE, headers=auth("pfd_not-a-key")), 401)


def test_unknown_and_out_of_range_ids(client, user_key):
    key = user_key()
    problem(client.get(f"{BASE}/123456", headers=auth(key)), 404)
    problem(client.delete(f"{BASE}/123456", headers=auth(key)), 404)
    problem(client.post(f"{BASE}/123456/start", headers=auth(key)), 404)
    problem(client.get(f"{BASE}/{2**63}", headers=auth(key)), 422, "experiment_id")
    problem(client.get(f"{BASE}/abc", headers=auth(key)), 422, "experiment_id")
    problem(client.get(f"{BASE}/0", headers=auth(key)), 422, "experiment_id")


def test_users_see_their_own_and_admins_see_all(client, user_key, admin_key, dataset_id):
    ada, bob = user_key(), user_key()
    mine = new(client, ada, dataset_id, name="ada-run").json()
    new(client, bob, dataset_id, name="bob-run")
    assert [e["name"] for e in client.get(BASE, headers=auth(ada)).json()["items"]] == ["ada-run"]
    problem(client.get(f"{BASE}/{mine['id']}", headers=auth(bob)), 404)
    problem(client.delete(f"{BASE}/{mine['id']}", headers=auth(bob)), 404)
    problem(client.post(f"{BASE}/{mine['id']}/start", headers=auth(bob)), 404)
    searched = client.get(BASE, params={"q": "run"}, headers=auth(bob)).json()["items"]
    assert [e["name"] for e in searched] == ["bob-run"]
    every = client.get(BASE, headers=auth(admin_key)).json()["items"]
    assert sorted(e["name"] for e in every) == ["ada-run", "bob-run"]
    assert client.get(f"{BASE}/{mine['id']}", headers=auth(admin_key)).status_code == 200


def test_status_moves(client, user_key, dataset_id):
    key = user_key()
    ident = new(client, key, dataset_id).json()["id"]

    def move(action, **kwargs):
        return client.post(f"{BASE}/{ident}/{action}", headers=auth(key), **kwargs)

    assert move("start").json()["status"] == "running"
    assert move("pause").json()["status"] == "paused"
    problem(move("pause"), 422)  # paused → paused is no move
    assert move("resume").json()["status"] == "running"
    finished = move("finish", json={"metrics": {"accuracy": 0.93}, "duration_seconds": 12.5})
    assert finished.status_code == 200, finished.text
    body = finished.json()
    assert body["status"] == "completed" and body["metrics"] == {"accuracy": 0.93}
    assert body["duration_seconds"] == 12.5 and body["total_epochs"] == 0
    problem(move("start"), 422)
    assert client.get(f"{BASE}/{ident}", headers=auth(key)).json()["status"] == "completed"


def test_fail_keeps_the_message_and_cancel(client, user_key, dataset_id):
    key = user_key()
    first = new(client, key, dataset_id, name="a").json()["id"]
    second = new(client, key, dataset_id, name="b").json()["id"]
    client.post(f"{BASE}/{first}/start", headers=auth(key))
    problem(client.post(f"{BASE}/{first}/fail", json={}, headers=auth(key)), 422, "error_message")
    failed = client.post(
        f"{BASE}/{first}/fail", json={"error_message": "CUDA out of memory"}, headers=auth(key)
    ).json()
    assert failed["status"] == "failed" and failed["metrics"] == {"error": "CUDA out of memory"}
    assert client.post(f"{BASE}/{second}/cancel", headers=auth(key)).json()["status"] == (
        "cancelled"
    )
    problem(client.post(f"{BASE}/{second}/finish", headers=auth(key)), 422)
    raw = '{"duration_seconds": NaN}'
    response = client.post(
        f"{BASE}/{second}/finish",
        content=raw,
        headers={**auth(key), "content-type": "application/json"},
    )
    problem(response, 422)  # refused before any route sees it


def test_tags(client, user_key, dataset_id):
    key = user_key()
    ident = new(client, key, dataset_id).json()["id"]
    put = client.put(f"{BASE}/{ident}/tags/Needs Review", headers=auth(key))
    assert put.status_code == 200, put.text
    assert put.json() == {
        "experiment_id": ident,
        "tag": "Needs Review",
        "slug": "needs-review",
        "added": True,
    }
    assert client.put(f"{BASE}/{ident}/tags/needs-review", headers=auth(key)).json()["added"] is (
        False
    )
    found = client.get(BASE, params={"q": "tag:needs-review"}, headers=auth(key)).json()
    assert [e["id"] for e in found["items"]] == [ident]
    assert client.delete(f"{BASE}/{ident}/tags/Needs Review", headers=auth(key)).status_code == 204
    found = client.get(BASE, params={"q": "tag:needs-review"}, headers=auth(key)).json()
    assert found["items"] == []
    problem(client.delete(f"{BASE}/{ident}/tags/never-made", headers=auth(key)), 404)
    problem(client.put(f"{BASE}/999999/tags/x", headers=auth(key)), 404)
    problem(client.put(f"{BASE}/{ident}/tags/x", headers=auth(user_key(scopes=("read",)))), 403)


def test_newest_first_in_keyset_pages(client, user_key, dataset_id):
    key = user_key()
    made = [new(client, key, dataset_id, name=f"run-{n}").json()["id"] for n in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(BASE, params=params, headers=auth(key)).json()
        assert len(page["items"]) <= 2
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(made, reverse=True)


def test_search_pages_and_errors(client, user_key, dataset_id):
    key = user_key()
    for n in range(3):
        new(client, key, dataset_id, name=f"vibration-{n}", model_type="lstm")
    new(client, key, dataset_id, name="other", model_type="cnn1d")
    first = client.get(BASE, params={"q": "model:lstm", "limit": 2}, headers=auth(key)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(
        BASE,
        params={"q": "model:lstm", "limit": 2, "cursor": first["next_cursor"]},
        headers=auth(key),
    ).json()
    names = [e["name"] for e in first["items"] + rest["items"]]
    assert sorted(names) == ["vibration-0", "vibration-1", "vibration-2"]
    assert rest["next_cursor"] is None
    body = problem(client.get(BASE, params={"q": 'name:"x'}, headers=auth(key)), 422, "q")
    assert "position" in body
    problem(client.get(BASE, params={"cursor": "!!"}, headers=auth(key)), 422, "cursor")
    problem(client.get(BASE, params={"cursor": "WzFd"}, headers=auth(key)), 422, "cursor")  # [1]
    problem(client.get(BASE, params={"limit": 0}, headers=auth(key)), 422, "limit")
    problem(client.get(BASE, params={"limit": 1001}, headers=auth(key)), 422, "limit")
