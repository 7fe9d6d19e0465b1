"""Fixtures for the HTTP API's tests. A test module loads them with::

    pytest_plugins = ["api_support"]
    from api_support import auth   # and any helper it calls

- ``api_app`` (per test module and dialect): ``create_app(engine=engine)`` on the
  test database of the current dialect (``engine`` of conftest.py).
- ``client`` (per test): a ``starlette.testclient.TestClient`` over that app, used
  as a context manager, so the app's lifespan runs (startup, then shutdown: the
  request log is flushed) around the test module (``running_client``; a test
  that needs a shutdown of its own makes its own TestClient); it never
  re-raises server errors
  (``raise_server_exceptions=False``): a test sees the 500 a client would. It
  asks for ``db``, so every table is emptied after the test and the plaintext
  scan runs (keys issued here are added to ``plaintexts``).
  Why TestClient: httpx's ``ASGITransport`` is async-only; TestClient runs the app
  in-process on one portal thread, with the same ASGI calls a server makes.
  ``async_client`` is the ``httpx.AsyncClient(transport=ASGITransport(app))`` for
  tests that need concurrency (use it under ``@pytest.mark.anyio``... or
  ``anyio.run``; no lifespan is run).
- ``user_key(scopes=("read", "write"), role="operator", rate_limit=1000, ...)``:
  a factory that creates a user and issues a key, committed; it returns the
  plaintext as an :class:`IssuedKey` (a ``str`` that also has ``key_id``,
  ``user_id`` and ``username``). ``admin_key``: one made for an admin with the
  admin scope.
- ``owner``: one ``user_key()`` (an operator with read and write), for tests
  that need a single owner of the rows they make.
- ``auth(key)``: the request headers that present ``key``.
- ``problem(response, status, field=None)``: the problem document of
  ``response``, checked (status, media type, title, ``urn:pfd-db:`` type, the
  field it names, and no traceback or SQL leaked).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session
    from starlette.testclient import TestClient

PASSWORD = "Correct-Horse-Battery-9"
PROBLEM = "application/problem+json"
_names = itertools.count(1)


class IssuedKey(str):
    """A plaintext API key, with the ids of its record and user."""

    key_id: int
    user_id: int
    username: str


class KeyMaker(Protocol):
    def __call__(
        self,
        scopes: Iterable[str] = ...,
        role: str = ...,
        rate_limit: int = ...,
        username: str | None = ...,
    ) -> IssuedKey: ...


def auth(key: str) -> dict[str, str]:
    """The headers that present ``key`` (``Authorization: Bearer``)."""
    return {"Authorization": f"Bearer {key}"}


def problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The problem document of ``response``, checked: its status, its media type,
    title and type, the field it names (when one is expected), and that it leaks
    no traceback or SQL."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"], body
    assert body["type"].startswith("urn:pfd-db:"), body
    if field is not None:
        assert body.get("field") == field, body
    assert "Traceback" not in response.text and "SELECT" not in response.text
    return body


@pytest.fixture(scope="module")
def api_app(engine: Engine) -> Any:
    """The API application on the test database of the current dialect."""
    from pfd_db.api import create_app

    return create_app(engine=engine)


@pytest.fixture(scope="module")
def running_client(api_app: Any) -> Iterator[TestClient]:
    """One TestClient per module: the app's lifespan starts before the module's
    first test and shuts down (flushing the request log) after its last."""
    from starlette.testclient import TestClient

    with TestClient(api_app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def client(running_client: TestClient, db: Session) -> Iterator[TestClient]:
    """The module's client, for one test (tables emptied after it). The test's
    request-log rows are written before that, so none lands in the next test's."""
    running_client.headers.clear()
    yield running_client
    running_client.app.state.request_log.flush()


@pytest.fixture
def async_client(api_app: Any, db: Session) -> Any:
    """An ``httpx.AsyncClient`` over ``ASGITransport(api_app)`` (no lifespan); use
    it inside the test's own event loop (``anyio.run``)."""
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://test")


def issue_key(
    db: Session,
    plaintexts: list[str],
    scopes: Iterable[str] = ("read", "write"),
    role: str = "operator",
    rate_limit: int = 1000,
    username: str | None = None,
) -> IssuedKey:
    """A new user (``role``) with a new key (``scopes``, ``rate_limit``), committed."""
    from pfd_db.store.identity import api_keys, users

    name = username or f"api-user-{next(_names)}"
    user = users.create_user(db, name, f"{name}@example.org", PASSWORD, role)
    plaintext, record = api_keys.issue(db, user, "test key", list(scopes), rate_limit=rate_limit)
    db.commit()
    plaintexts.append(plaintext)
    issued = IssuedKey(plaintext)
    issued.key_id, issued.user_id, issued.username = record.id, user.id, user.username
    return issued


@pytest.fixture
def user_key(db: Session, plaintexts: list[str]) -> KeyMaker:
    """A factory of keys: ``user_key(scopes=..., role=..., rate_limit=...)``."""

    def make(
        scopes: Iterable[str] = ("read", "write"),
        role: str = "operator",
        rate_limit: int = 1000,
        username: str | None = None,
    ) -> IssuedKey:
        return issue_key(db, plaintexts, scopes, role, rate_limit, username)

    return make


@pytest.fixture
def owner(user_key: KeyMaker) -> IssuedKey:
    """One key of an operator with read and write scopes."""
    return user_key()


@pytest.fixture
def admin_key(db: Session, plaintexts: list[str]) -> IssuedKey:
    """A key with the admin scope, of a user with the admin role."""
    return issue_key(db, plaintexts, ("admin",), "admin")


__all__ = [
    "PASSWORD",
    "PROBLEM",
    "IssuedKey",
    "KeyMaker",
    "admin_key",
    "api_app",
    "async_client",
    "auth",
    "client",
    "issue_key",
    "owner",
    "problem",
    "running_client",
    "user_key",
]
