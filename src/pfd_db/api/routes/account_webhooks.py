"""The caller's webhooks (``/api/v1/me/webhooks``): list, create, delete, send a test.

The signing secret is in the 201 response of a creation, once; lists show a
webhook's host, never its path, query or secret. A webhook posts to public
http(s) hosts only (an internal one is a 422 naming ``url``); one URL per user
(another webhook for it is a 409). Another user's webhook is answered as unknown
(404); an admin may list another user's with ``?user=``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from sqlalchemy.orm import Session

from pfd_db.api.access import Caller, own_account_access, read_access
from pfd_db.api.db import read_session, write_session
from pfd_db.api.paging import DEFAULT_LIMIT, Cursor, Limit, Page
from pfd_db.api.routes.listing import UserParam, naming, short_list_page, subject
from pfd_db.api.schemas.account import TestDelivery, Webhook, WebhookCreate, WebhookCreated
from pfd_db.api.schemas.common import PROBLEM_RESPONSES, problem_responses
from pfd_db.models import WebhookConfiguration
from pfd_db.store.notify import webhooks
from pfd_db.values import INT64_MAX

router = APIRouter(prefix="/api/v1/me/webhooks", tags=["account"])

Reader = Annotated[Caller, Depends(read_access)]
Owner = Annotated[Caller, Depends(own_account_access)]
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="a row's id")]
WITH_404 = PROBLEM_RESPONSES | problem_responses(404)
FIELDS = ("url", "events", "name", "description", "settings")


def _own(session: Session, caller: Caller, webhook_id: int) -> WebhookConfiguration:
    """The caller's webhook ``webhook_id``; NotFound for another user's, as for none."""
    return webhooks.get_webhook(session, webhook_id, caller.user_id)


@router.get("", response_model=Page[Webhook], responses=WITH_404)
def list_webhooks(
    request: Request,
    caller: Reader,
    user: UserParam = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Webhook]:
    """The caller's webhooks, oldest first."""
    with read_session(request) as session:
        rows = webhooks.list_webhooks(session, subject(caller, user))
        return short_list_page(rows, cursor, limit, Webhook.of, newest_first=False)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=PROBLEM_RESPONSES | problem_responses(409),
)
def create_webhook(request: Request, caller: Owner, body: WebhookCreate) -> WebhookCreated:
    """A new active webhook of the caller; its signing secret is in this response only."""
    with write_session(request) as session, naming(*FIELDS):
        config, secret = webhooks.create_webhook(
            session,
            caller.user_id,
            body.url,
            body.events,
            provider=body.provider,
            name=body.name,
            description=body.description,
            settings=body.settings,
        )
        return WebhookCreated.made(config, secret)


@router.get("/{webhook_id}", response_model=Webhook, responses=WITH_404)
def get_webhook(request: Request, caller: Reader, webhook_id: RowId) -> Webhook:
    """One of the caller's webhooks."""
    with read_session(request) as session:
        return Webhook.of(_own(session, caller, webhook_id))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=WITH_404)
def delete_webhook(request: Request, caller: Owner, webhook_id: RowId) -> Response:
    """Delete one of the caller's webhooks with its delivery log."""
    with write_session(request) as session:
        webhooks.delete_webhook(session, _own(session, caller, webhook_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TestDelivery,
    responses=WITH_404,
)
def send_test(request: Request, caller: Owner, webhook_id: RowId) -> TestDelivery:
    """Queue a ``test.webhook`` delivery to one of the caller's webhooks."""
    with write_session(request) as session:
        delivery = webhooks.send_test(session, _own(session, caller, webhook_id))
        return TestDelivery(
            delivery_id=delivery.id,
            webhook_id=delivery.webhook_config_id,
            event_type=delivery.event_type,
            status=delivery.status,
        )
