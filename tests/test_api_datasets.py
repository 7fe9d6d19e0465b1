"""Datasets over HTTP on both dialects: list (keyset by name), read, register; who
sees which; auth and error mappings."""

from __future__ import annotations

from api_support import auth, problem

pytest_plugins = ["api_support"]

BASE = "/api/v1/datasets"


def body(name="vibration", **extra):
    return {
        "name": name,
        "fault_types": ["normal", "oil_whirl"],
        "severity_levels": ["low", "high"],
        "file_path": "data/v.h5",
        **extra,
    }


def test_register_read_and_list(client, user_key):
    key = user_key()
    created = client.post(
        BASE, json=body(description="rig A", meta_data={"rate": 20000}), headers=auth(key)
    )
    assert created.status_code == 201, created.text
    made = created.json()
    assert made["name"] == "vibration" and made["created_by"] == key.user_id
    assert made["fault_types"] == ["normal", "oil_whirl"] and made["num_signals"] == 0
    assert made["meta_data"] == {"rate": 20000} and made["description"] == "rig A"
    assert client.get(f"{BASE}/{made['id']}", headers=auth(key)).json() == made
    listed = client.get(BASE, headers=auth(key)).json()
    assert listed == {"items": [made], "next_cursor": None}


def test_duplicate_name_is_409(client, user_key):
    key = user_key()
    assert client.post(BASE, json=body(), headers=auth(key)).status_code == 201
    problem(client.post(BASE, json=body(), headers=auth(key)), 409)


def test_bad_input_names_the_field(client, user_key):
    key = user_key()
    problem(client.post(BASE, json=body(fault_types=[]), headers=auth(key)), 422, "fault_types")
    problem(
        client.post(BASE, json=body(fault_types=["Not An Id"]), headers=auth(key)),
        422,
        "fault_types",
    )
    problem(client.post(BASE, json=body(name=" "), headers=auth(key)), 422, "name")
    problem(client.post(BASE, json=body(num_signals=-1), headers=auth(key)), 422, "num_signals")
    problem(client.post(BASE, json=body(extra=1), headers=auth(key)), 422, "extra")


def test_shared_and_own_datasets_are_seen_others_not(client, db, user_key, admin_key):
    from pfd_db.store.ml import datasets

    shared = datasets.register_dataset(db, "shared", ["normal"], ["low"], "s.h5")
    db.commit()
    ada, bob = user_key(), user_key()
    adas = client.post(BASE, json=body("ada-data"), headers=auth(ada)).json()
    client.post(BASE, json=body("bob-data"), headers=auth(bob))
    names = [d["name"] for d in client.get(BASE, headers=auth(ada)).json()["items"]]
    assert names == ["ada-data", "shared"]
    problem(client.get(f"{BASE}/{adas['id']}", headers=auth(bob)), 404)
    assert client.get(f"{BASE}/{shared.id}", headers=auth(bob)).status_code == 200
    every = [d["name"] for d in client.get(BASE, headers=auth(admin_key)).json()["items"]]
    assert every == ["ada-data", "bob-data", "shared"]
    # An experiment may not be made on another user's dataset either.
    experiment = {"name": "e", "model_type": "m", "dataset": "ada-data", "config": {}}
    problem(client.post("/api/v1/experiments", json=experiment, headers=auth(bob)), 404)


def test_pages_by_name(client, user_key):
    key = user_key()
    for name in ("d", "b", "a", "c", "e"):
        client.post(BASE, json=body(name), headers=auth(key))
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(BASE, params=params, headers=auth(key)).json()
        seen += [d["name"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["a", "b", "c", "d", "e"]
    problem(client.get(BASE, params={"cursor": "MQ"}, headers=auth(key)), 422, "cursor")  # 1


def test_auth_and_unknown_ids(client, user_key):
    problem(client.get(BASE), 401)
    problem(client.post(BASE, json=body()), 401)
    reader = user_key(scopes=("read",))
    problem(client.post(BASE, json=body(), headers=auth(reader)), 403)
    problem(client.get(f"{BASE}/424242", headers=auth(reader)), 404)
    problem(client.get(f"{BASE}/-1", headers=auth(reader)), 422, "dataset_id")
