"""Sessions for route functions, and the request's one rate-limit write.

Route functions are plain ``def`` (FastAPI runs them in its thread pool: one
thread hop) and open their session with::

    with write_session(request) as session:   # commits on success, rolls back on error
        ...
    with read_session(request) as session:    # refuses any write
        ...

Each request is counted once against its key's hourly limit
(:func:`pfd_db.store.identity.rate_limits.consume`: one UPDATE), in the route's
thread hop: a write session counts it in its own transaction, just before the
commit; a read session first, in a short transaction of its own. A key no
longer usable is a 401 (and leaves the auth cache), one over its limit a 429
with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection
from starlette.types import Scope

from pfd_db import replicas
from pfd_db.api.access import Caller, unauthenticated
from pfd_db.api.problems import ApiProblem
from pfd_db.store.identity import rate_limits
from pfd_db.store.ops import audit
from pfd_db.types import utcnow

ALLOWANCE = "allowance"
KEY_DIGEST = "key_digest"


@contextmanager
def write_session(request: HTTPConnection) -> Iterator[Session]:
    """A session acting as the caller's user (for the audit log) that commits
    when the block succeeds and rolls back when it raises; closed either way.

    The request is counted against its key's limit at the end of the block, in
    the same transaction: one commit, and on PostgreSQL the key's row is locked
    only while that commit runs. A request over its limit is refused then, and
    its work rolled back. A block that raises is counted on its own (refused
    requests count too)."""
    session: Session = request.app.state.sessions()
    try:
        caller = request.scope.get("state", {}).get("caller")
        if isinstance(caller, Caller):
            audit.acting_as_verified(session, caller.user_id)
        yield session
        count_request(request.scope, session)
        session.commit()
    except BaseException:
        session.rollback()
        _count_alone(request)
        raise
    finally:
        session.close()


@contextmanager
def read_session(request: HTTPConnection) -> Iterator[Session]:
    """A session that only reads: any write through it raises
    :class:`~pfd_db.errors.ReadOnlySession` and nothing is written. The request
    is counted against its key's limit first, in a transaction of its own. With
    ``PFD_DB_REPLICA_URLS`` set it reads from a usable replica (:mod:`pfd_db.replicas`)."""
    _count_alone(request)
    state = request.app.state
    with replicas.connection_for_reading(state.engine) as replica:
        session: Session = state.read_sessions(**({} if replica is None else {"bind": replica}))
        try:
            yield session
        finally:
            session.close()  # objects read stay readable (detached, not expired)


def _count_alone(request: HTTPConnection) -> None:
    """Count the request in a transaction of its own, unless it was counted."""
    if _needs_count(request.scope):
        with request.app.state.sessions() as counting:
            count_request(request.scope, counting)
            counting.commit()


def _needs_count(scope: Scope) -> bool:
    state = scope.get("state", {})
    return isinstance(state.get("caller"), Caller) and ALLOWANCE not in state


def count_request(scope: Scope, session: Session) -> None:
    """Count this request against its key's limit, once per request, in the
    session's transaction (the caller commits).

    A 401 problem when the key is no longer usable (evicted from the auth
    cache), a 429 problem when it is over its limit. Requests without a caller
    are not counted.
    """
    if not _needs_count(scope):
        return
    state = scope["state"]
    caller: Caller = state["caller"]
    now = utcnow()
    allowance = rate_limits.consume(session, caller.key_id, now)
    if allowance is None:
        cache = scope["app"].state.auth_cache
        cache.evict(state.get(KEY_DIGEST, ""))
        state["caller"] = None
        raise unauthenticated("this API key was revoked, expired or deactivated")
    state[ALLOWANCE] = allowance
    if not allowance.allowed:
        raise ApiProblem(
            429,
            f"this key's limit of {allowance.limit} requests an hour is reached",
            slug="rate-limited",
            headers={"Retry-After": str(allowance.seconds_to_reset(now))},
        )
