"""HPO and NAS campaigns over HTTP on both dialects: list, read, trials; who sees
which; auth and error mappings."""

from __future__ import annotations

import pytest

from api_support import auth, problem

pytest_plugins = ["api_support"]

BASE = "/api/v1/campaigns"


@pytest.fixture
def hpo(db, owner):
    """An HPO campaign of ``owner`` with three trials recorded (accuracies .7, .9, .8)."""
    from pfd_db.store.ml import campaigns, datasets, experiments

    dataset = datasets.register_dataset(db, "hpo-data", ["normal"], ["low"], "d.h5")
    campaign = campaigns.create_hpo_campaign(
        db,
        "sweep",
        "random_search",
        "cnn1d",
        dataset,
        {"lr": [0.1, 0.01]},
        {"trials": 5},
        5,
        created_by=owner.user_id,
    )
    for n, accuracy in enumerate((0.7, 0.9, 0.8)):
        trial = experiments.create_experiment(
            db,
            f"trial-{n}",
            "cnn1d",
            dataset,
            {"lr": n},
            created_by=owner.user_id,
        )
        trial.metrics = {"val_accuracy": accuracy}
        db.flush()
        campaigns.record_trial(db, campaign, trial)
    db.commit()
    return campaign.id


@pytest.fixture
def nas(db):
    """A NAS campaign (no owner) with three trials."""
    from pfd_db.store.ml import campaigns, datasets

    dataset = datasets.register_dataset(db, "nas-data", ["normal"], ["low"], "d.h5")
    campaign = campaigns.create_nas_campaign(db, "arch", dataset, num_trials=3)
    for n in range(3):
        campaigns.add_trial(db, campaign, {"layers": n + 1}, {"validation_accuracy": 0.5 + n / 10})
    db.commit()
    return campaign.id


def test_hpo_list_get_and_trials_best_first(client, owner, hpo):
    listed = client.get(f"{BASE}/hpo", headers=auth(owner)).json()
    assert [c["id"] for c in listed["items"]] == [hpo] and listed["next_cursor"] is None
    campaign = client.get(f"{BASE}/hpo/{hpo}", headers=auth(owner)).json()
    assert campaign["name"] == "sweep" and campaign["trials_completed"] == 3
    assert campaign["best_accuracy"] == 0.9 and campaign["method"] == "random_search"
    first = client.get(f"{BASE}/hpo/{hpo}/trials", params={"limit": 2}, headers=auth(owner))
    page = first.json()
    assert [t["accuracy"] for t in page["items"]] == [0.9, 0.8]
    assert [t["best"] for t in page["items"]] == [True, False]
    assert page["items"][0]["experiment"]["name"] == "trial-1"
    rest = client.get(
        f"{BASE}/hpo/{hpo}/trials",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=auth(owner),
    ).json()
    assert [t["accuracy"] for t in rest["items"]] == [0.7] and rest["next_cursor"] is None


def test_hpo_is_its_owners_and_admins(client, user_key, admin_key, hpo):
    stranger = user_key()
    assert client.get(f"{BASE}/hpo", headers=auth(stranger)).json()["items"] == []
    problem(client.get(f"{BASE}/hpo/{hpo}", headers=auth(stranger)), 404)
    problem(client.get(f"{BASE}/hpo/{hpo}/trials", headers=auth(stranger)), 404)
    assert client.get(f"{BASE}/hpo/{hpo}", headers=auth(admin_key)).status_code == 200
    assert len(client.get(f"{BASE}/hpo", headers=auth(admin_key)).json()["items"]) == 1


def test_nas_list_get_and_trials_in_pages(client, user_key, nas):
    reader = user_key(scopes=("read",), role="viewer")  # NAS campaigns have no owner
    listed = client.get(f"{BASE}/nas", headers=auth(reader)).json()
    assert [c["id"] for c in listed["items"]] == [nas]
    campaign = client.get(f"{BASE}/nas/{nas}", headers=auth(reader)).json()
    assert campaign["name"] == "arch" and campaign["best_accuracy"] == pytest.approx(0.7)
    assert campaign["status"] == "pending" and campaign["search_algorithm"] == "random"
    numbers, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{BASE}/nas/{nas}/trials", params=params, headers=auth(reader)).json()
        numbers += [t["trial_number"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert numbers == [1, 2, 3]
    trial = client.get(f"{BASE}/nas/{nas}/trials", headers=auth(reader)).json()["items"][0]
    assert trial["architecture"] == {"layers": 1} and len(trial["architecture_hash"]) == 64


def test_campaign_pages_newest_first(client, db, user_key):
    from pfd_db.store.ml import campaigns, datasets

    dataset = datasets.register_dataset(db, "many", ["normal"], ["low"], "d.h5")
    made = [campaigns.create_nas_campaign(db, f"c{n}", dataset).id for n in range(5)]
    db.commit()
    key = user_key()
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{BASE}/nas", params=params, headers=auth(key)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(made, reverse=True)


def test_auth_unknown_ids_and_bad_cursors(client, user_key):
    problem(client.get(f"{BASE}/hpo"), 401)
    problem(client.get(f"{BASE}/nas/1"), 401)
    key = user_key(scopes=("read",))
    problem(client.get(f"{BASE}/hpo/999", headers=auth(key)), 404)
    problem(client.get(f"{BASE}/nas/999", headers=auth(key)), 404)
    problem(client.get(f"{BASE}/nas/999/trials", headers=auth(key)), 404)
    problem(client.get(f"{BASE}/nas", params={"cursor": "ImEi"}, headers=auth(key)), 422, "cursor")
    problem(client.get(f"{BASE}/hpo", params={"cursor": "LTE"}, headers=auth(key)), 422, "cursor")
    problem(client.get(f"{BASE}/hpo/x", headers=auth(key)), 422, "campaign_id")
