"""The audit log (``system_logs``): who did what to which account, key or secret, when.

Every security-relevant store operation writes one entry, in the caller's
transaction (roll back, and the entry goes with what it describes):

=============================  ===========================================
action                         written by
=============================  ===========================================
``user.created``               ``users.create_user``
``user.role_changed``          ``users.set_role`` (when the role changes)
``user.deactivated``           ``users.deactivate``
``user.password_reset``        ``users.reset_password``
``user.password_changed``      ``users.change_password``
``user.locked``                a login that locks an account or an address
                               (in the failed login's own transaction)
``twofactor.enabled``          ``twofactor.confirm_setup``
``twofactor.disabled``         ``twofactor.disable``
``twofactor.backup_codes``     ``twofactor.generate_backup_codes``
``api_key.issued``             ``api_keys.issue``
``api_key.revoked``            ``api_keys.revoke`` (the first time)
``session.revoked``            ``sessions.revoke``, ``sessions.revoke_others``
``webhook.created``            ``webhooks.create_webhook``
``webhook.url_changed``        ``webhooks.update_webhook`` (when the URL changes)
``webhook.deleted``            ``webhooks.delete_webhook``
``webhook.secret_rotated``     ``webhooks.rotate_secret``
``instance_key.rotated``       each batch of ``pfd-db key rotate`` (``twofactor``'s
                               and ``webhooks.reencrypt_secrets``) that moved
                               secrets: which column, how many, the first and
                               last id
=============================  ===========================================

``user_id`` is the actor: the user the session acts for (:func:`acting_as`), or
None for the system, a script or an operator at the shell. The account an entry
is about is in its ``details`` (``user_id``, ``username``). Details never hold a
secret: :func:`record` refuses keys that name one (password, token, secret,
code, hash, ...), and the store passes ids, names, roles, counts and public
key prefixes only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, or_
from sqlalchemy.orm import Session

from pfd_db.errors import InvalidInput
from pfd_db.models import SystemLog, User
from pfd_db.models.enums import LogStatus
from pfd_db.store import paging
from pfd_db.store.validation import (
    optional_object,
    optional_str,
    require_member,
    require_text,
)
from pfd_db.store.writes import id_of, load, unread_id

ACTION_MAX = 100
ERROR_MAX = 1000
SECRET_KEY = re.compile(r"password|passwd|secret|token|plaintext|hash|otp|code(?!s?_?count)", re.I)
"""Detail keys that name a secret (``backup_codes_count`` is a count, not a code)."""
_ACTOR = "pfd_db.audit.actor"  # session.info key: the id of the user the session acts for
TEXT_MAX = 200
ACTION_SHAPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")


def acting_as(session: Session, user: User | int | None) -> None:
    """Make ``user`` the actor of the audit entries written through ``session`` from
    now on (None: the system). A web request sets it once, to the logged-in user."""
    session.info[_ACTOR] = id_of(session, User, user, "user")


def acting_as_verified(session: Session, user_id: int) -> None:
    """:func:`acting_as` for a caller that has just verified ``user_id`` itself
    (the server, the owner of the API key it checked): not read again, so a
    request that writes no audit entry costs no query. An entry for a user gone
    meanwhile is refused when written (:class:`NotFound`)."""
    session.info[_ACTOR] = unread_id(session, User, user_id, "user")


def actor(session: Session) -> int | None:
    """The id of the user ``session`` acts for (see :func:`acting_as`), or None."""
    found: int | None = session.info.get(_ACTOR)
    return found


def record(
    session: Session,
    actor: User | int | None,
    action: str,
    status: LogStatus | str = LogStatus.SUCCESS,
    details: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> SystemLog:
    """Add one audit entry: ``actor`` (a user, their id, or None for the system)
    did ``action`` (dotted lowercase words, e.g. ``"api_key.revoked"``) with
    ``status`` (success, error or warning); ``details`` is a JSON object of what
    it concerned, ``error`` what went wrong. Flushed; the caller commits.

    :class:`InvalidInput` naming the field, before anything is written, for a
    malformed action, an unknown status, details that are not a JSON object or
    that have a key naming a secret.
    """
    entry = SystemLog(
        user_id=id_of(session, User, actor, "actor"),
        action=_valid_action(action),
        status=require_member(status, LogStatus, "status").value,
        details=_valid_details(details),
        error_message=optional_str(error, "error", ERROR_MAX),
    )
    session.add(entry)
    session.flush()
    return entry


def about(
    session: Session,
    user: User | int,
    action: str,
    status: LogStatus | str = LogStatus.SUCCESS,
    **details: Any,
) -> SystemLog:
    """Record ``action`` on ``user``'s account by the session's actor (see
    :func:`acting_as`): the details name the account (``user_id``, ``username``)
    and add ``details``. What the store's security operations call."""
    user = load(session, User, user, "user")
    named = {"user_id": user.id, "username": user.username, **details}
    return record(session, actor(session), action, status, named)


def entries(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: User | int | None = None,
    action: str | None = None,
    status: LogStatus | str | None = None,
    text: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[SystemLog]:
    """Audit entries, newest first, at most ``limit`` (up to 1000): those from
    ``since`` (inclusive) to ``until`` (exclusive) when given, of ``actor``, of
    ``action`` (exact, or every action under a prefix ending in ``.``, like
    ``"user."``), with ``status``, whose action or details contain ``text``
    (at most 200 characters; ``%`` and ``_`` are plain characters; case-insensitive,
    on SQLite for ASCII letters only). The next page: ``before_id`` = the id of the
    last entry of this one (see :mod:`pfd_db.store.paging`).

    Served by ``idx_system_log_user_time`` (an actor), ``idx_system_log_action_time``
    (an action) or ``idx_system_log_time_status`` (a time range); ``text`` is
    checked on the entries those give, newest first, until the page is full.
    """
    conditions = paging.in_range(SystemLog.created_at, since, until)
    if actor is not None:
        conditions.append(SystemLog.user_id == id_of(session, User, actor, "actor"))
    if action is not None:
        conditions.append(_action_is(action))
    if status is not None:
        wanted = require_member(status, LogStatus, "status").value
        conditions.append(SystemLog.status == wanted)
    if text is not None:
        conditions.append(_contains(session, require_text(text, "text", TEXT_MAX)))
    return paging.newest_page(
        session, SystemLog.created_at, SystemLog.id, conditions, limit, before_id
    )


def _valid_action(action: object) -> str:
    if (
        not isinstance(action, str)
        or len(action) > ACTION_MAX
        or not ACTION_SHAPE.fullmatch(action)
    ):
        raise InvalidInput(
            f"action must be dotted lowercase words of at most {ACTION_MAX} characters, "
            f"like 'api_key.revoked' (got {action!r:.60})"
        )
    return action


def _action_is(action: object) -> ColumnElement[bool]:
    """``action`` exactly, or (``"user."``) every action under that prefix."""
    if isinstance(action, str) and action.endswith("."):
        prefix = _valid_action(action[:-1]) + "."
        return SystemLog.action.startswith(prefix, autoescape=True)
    return SystemLog.action == _valid_action(action)


def _contains(session: Session, text: str) -> ColumnElement[bool]:
    """The action, or the details as the database stores them, hold ``text``.

    The details are searched as JSON text, so ``text`` is spelled as JSON spells a
    string (quotes and backslashes escaped; on SQLite, whose JSON is written by
    Python, other than ASCII as ``\\uXXXX`` too)."""
    ascii_only = session.get_bind().dialect.name != "postgresql"
    spelled = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
    return or_(
        SystemLog.action.icontains(text, autoescape=True),
        cast(SystemLog.details, Text).icontains(spelled, autoescape=True),
    )


def _valid_details(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    checked = optional_object(details, "details")
    if checked is None:
        return None
    pending: list[tuple[str, object]] = [("details", checked)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, Mapping):
            for key, item in value.items():
                if SECRET_KEY.search(key):
                    raise InvalidInput(
                        f"{path} has the key {key!r}, which names a secret: "
                        "an audit entry never holds one"
                    )
                pending.append((f"{path}[{key!r}]", item))
        elif isinstance(value, list | tuple):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return checked
