"""``GET /health`` (the process is up) and ``GET /ready`` (its database answers and is at head).

Neither needs a key: load balancers and orchestrators call them.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request

from pfd_db.api.problems import ApiProblem, unavailable
from pfd_db.api.schemas.common import ApiModel, problem_responses
from pfd_db.errors import PfdDbError

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(ApiModel):
    """The process answers."""

    status: str = "ok"


class Ready(ApiModel):
    """The database answers and is at the code's revision."""

    status: str = "ready"
    revision: str


@router.get("/health", summary="The process is up")
async def health() -> Health:
    """Always 200 while the process serves requests; touches no database."""
    return Health()


@router.get(
    "/ready", summary="The database is reachable and at head", responses=problem_responses(503)
)
def ready(request: Request) -> Ready:
    """200 when the database answers and its revision is the code's head; a 503
    problem (with ``Retry-After``) otherwise."""
    from pfd_db import migrations

    try:
        state = migrations.state(request.app.state.engine)
    except PfdDbError as exc:
        log.warning("not ready: %s", exc)
        raise unavailable() from None
    if not state.at_head:
        raise ApiProblem(
            503,
            f"the database is at revision {state.current or 'none'}, not {state.head}: "
            "run pfd-db migrate",
            slug="not-at-head",
            headers={"Retry-After": "30"},
        )
    return Ready(revision=state.head)
