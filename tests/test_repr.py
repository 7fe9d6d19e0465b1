"""repr() of models: works on new, saved, expired and detached objects, sends no SQL,
shows no secret."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from pfd_db.models import Base, Experiment, User
from probes import statements

MODELS = sorted((mapper.class_ for mapper in Base.registry.mappers), key=lambda c: c.__name__)


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_repr_of_a_new_empty_object_works(model):
    assert repr(model()).startswith(f"<{model.__name__} id=None")


def test_repr_shows_the_id_and_the_chosen_attributes_but_no_secret(db, plaintexts):
    plaintexts.append("not-a-real-hash")
    user = User(username="ada", email="ada@example.com", password_hash="not-a-real-hash")
    assert repr(user) == "<User id=None username='ada'>"  # role is set by the flush
    db.add(user)
    db.flush()
    assert repr(user) == f"<User id={user.id} username='ada' role='viewer'>"
    assert "not-a-real-hash" not in repr(user)
    db.rollback()


def test_repr_of_an_expired_detached_object_sends_nothing_and_still_names_it(engine, db):
    experiment = Experiment(name="cnn-1", model_type="cnn1d", config={}, dataset_id=None)
    assert repr(experiment) == "<Experiment id=None name='cnn-1'>"
    user = User(username="bob", email="bob@example.com", password_hash="x")
    db.add(user)
    db.commit()
    user_id = user.id
    db.expire(user)
    with statements(engine) as sent:
        shown = repr(user)
    assert sent == []
    assert shown == f"<User id={user_id}>"
    other = Session(engine)
    try:
        loaded = other.get(User, user_id)
        other.expire(loaded)
        other.close()  # detached and expired: nothing can be loaded any more
        assert repr(loaded) == f"<User id={user_id}>"
    finally:
        other.close()
