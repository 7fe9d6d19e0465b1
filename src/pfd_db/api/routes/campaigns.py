"""HPO and NAS campaigns over HTTP, with their trials (``/api/v1/campaigns``); reads only.

An HPO campaign has an owner (``created_by``): a caller sees its own, an admin
every one; another user's is answered as unknown (404). Its trials are the
experiments it counted, shown to whoever sees the campaign. A NAS campaign has
no owner: any caller with read access sees every one, and its trials.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from pfd_db.api.access import Caller, read_access
from pfd_db.api.db import read_session
from pfd_db.api.paging import BadCursor, Cursor, Limit, Page, decode_cursor, encode_cursor
from pfd_db.api.routes.experiments import FOUND, RowId
from pfd_db.api.schemas.campaigns import HPOCampaignOut, HPOTrialOut, NASCampaignOut, NASTrialOut
from pfd_db.api.schemas.common import PROBLEM_RESPONSES
from pfd_db.errors import NotFound
from pfd_db.models import HPOCampaign, NASCampaign, NASTrial
from pfd_db.store.ml import campaigns
from pfd_db.values import INT64_MAX

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"])

Reader = Annotated[Caller, Depends(read_access)]


def cursor_number(cursor: str | None, lowest: int = 0) -> int | None:
    """The whole number a cursor of these routes holds (an id or a position), or
    None without a cursor; 422 naming ``cursor`` for anything else."""
    if cursor is None:
        return None
    value = decode_cursor(cursor)
    if not isinstance(value, int) or isinstance(value, bool) or not lowest <= value <= INT64_MAX:
        raise BadCursor("cursor: not a cursor of this list")
    return value


def _visible_hpo(session: Session, caller: Caller, campaign_id: int) -> HPOCampaign:
    found = session.get(HPOCampaign, campaign_id)
    if found is None or not (caller.is_admin or found.created_by == caller.user_id):
        raise NotFound(f"no HPO campaign with id {campaign_id}")
    return found


def _by_id_page(
    session: Session, query: Any, model: Any, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Rows of ``query`` newest first by id, after the id the cursor holds."""
    before = cursor_number(cursor, 1)
    if before is not None:
        query = query.where(model.id < before)
    rows = list(session.scalars(query.order_by(model.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more else None


# --- HPO -------------------------------------------------------------------------------


@router.get("/hpo", response_model=Page[HPOCampaignOut], responses=PROBLEM_RESPONSES)
def list_hpo(
    caller: Reader, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[HPOCampaignOut]:
    """The caller's HPO campaigns (an admin's: all), newest first."""
    query = select(HPOCampaign)
    if not caller.is_admin:
        query = query.where(HPOCampaign.created_by == caller.user_id)
    with read_session(request) as session:
        rows, next_cursor = _by_id_page(session, query, HPOCampaign, limit, cursor)
        items = [HPOCampaignOut.model_validate(row) for row in rows]
    return Page[HPOCampaignOut](items=items, next_cursor=next_cursor)


@router.get("/hpo/{campaign_id}", response_model=HPOCampaignOut, responses=FOUND)
def get_hpo(campaign_id: RowId, caller: Reader, request: Request) -> HPOCampaignOut:
    """One HPO campaign (404 if unknown or another user's)."""
    with read_session(request) as session:
        return HPOCampaignOut.model_validate(_visible_hpo(session, caller, campaign_id))


@router.get("/hpo/{campaign_id}/trials", response_model=Page[HPOTrialOut], responses=FOUND)
def hpo_trials(
    campaign_id: RowId, caller: Reader, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[HPOTrialOut]:
    """The campaign's trials best first (``campaigns.hpo_trials``: by score, those
    without one last). A campaign has at most ``trials_total`` of them, ranked
    as a whole: the cursor holds the position in that ranking."""
    start = cursor_number(cursor) or 0
    with read_session(request) as session:
        ranked = campaigns.hpo_trials(session, _visible_hpo(session, caller, campaign_id))
        page = ranked[start : start + limit]
        items = [HPOTrialOut.model_validate(trial) for trial in page]
    end = start + len(page)
    next_cursor = encode_cursor(end) if end < len(ranked) else None
    return Page[HPOTrialOut](items=items, next_cursor=next_cursor)


# --- NAS -------------------------------------------------------------------------------


@router.get("/nas", response_model=Page[NASCampaignOut], responses=PROBLEM_RESPONSES)
def list_nas(
    caller: Reader, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[NASCampaignOut]:
    """Every NAS campaign (they have no owner), newest first."""
    with read_session(request) as session:
        rows, next_cursor = _by_id_page(session, select(NASCampaign), NASCampaign, limit, cursor)
        items = [NASCampaignOut.model_validate(row) for row in rows]
    return Page[NASCampaignOut](items=items, next_cursor=next_cursor)


def _nas(session: Session, campaign_id: int) -> NASCampaign:
    found = session.get(NASCampaign, campaign_id)
    if found is None:
        raise NotFound(f"no NAS campaign with id {campaign_id}")
    return found


@router.get("/nas/{campaign_id}", response_model=NASCampaignOut, responses=FOUND)
def get_nas(campaign_id: RowId, caller: Reader, request: Request) -> NASCampaignOut:
    """One NAS campaign."""
    with read_session(request) as session:
        return NASCampaignOut.model_validate(_nas(session, campaign_id))


@router.get("/nas/{campaign_id}/trials", response_model=Page[NASTrialOut], responses=FOUND)
def nas_trials(
    campaign_id: RowId, caller: Reader, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[NASTrialOut]:
    """The campaign's trials in trial-number order (keyset on the trial number)."""
    after = cursor_number(cursor)
    with read_session(request) as session:
        campaign = _nas(session, campaign_id)
        query = select(NASTrial).where(NASTrial.campaign_id == campaign.id)
        if after is not None:
            query = query.where(NASTrial.trial_number > after)
        rows = list(session.scalars(query.order_by(NASTrial.trial_number).limit(limit + 1)))
        more = len(rows) > limit
        items = [NASTrialOut.model_validate(row) for row in rows[:limit]]
    return Page[NASTrialOut](
        items=items, next_cursor=encode_cursor(items[-1].trial_number) if more else None
    )
