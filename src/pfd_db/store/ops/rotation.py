"""Moving stored ciphertexts to the first instance key, one batch at a time:
the shared step of ``pfd-db key rotate`` for every encrypted column.

A batch that moves any secret writes one ``instance_key.rotated`` audit entry in
the caller's transaction, whichever column it was (TOTP or webhook signing
secrets): ``{"column": "users.totp_secret", "checked": 500, "reencrypted": 12,
"ids": [first, last]}``, never a secret or a key."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from pfd_db.crypto import reencrypt
from pfd_db.store.ops import audit
from pfd_db.store.validation import require_count

REENCRYPT_BATCH = 500


class Reencrypted(NamedTuple):
    """One batch of re-encryption."""

    checked: int
    """Secrets looked at."""
    reencrypted: int
    """Of those, how many were under another key than the first, and now are not."""
    last_id: int | None
    """The last row id looked at (None if none): ``after_id`` of the next batch."""
    ids: list[int]
    """The ids of the rows whose secret moved."""


def reencrypt_batch(
    session: Session,
    column: InstrumentedAttribute[Any],
    after_id: object = 0,
    limit: object = REENCRYPT_BATCH,
) -> Reencrypted:
    """Re-encrypt under the first instance key the values of ``column`` (an
    encrypted text column of a model with an integer ``id``) in up to ``limit``
    rows with an id above ``after_id``, in id order. Values already under the
    first key are left as they are, so running it again changes nothing. The
    rows are locked while the batch runs; it flushes, the caller commits. A batch
    that moved any secret is audited (see the module doc)."""
    after = require_count(after_id, "after_id")
    size = require_count(limit, "limit", minimum=1)
    model = column.class_
    batch = session.scalars(
        select(model)
        .where(model.id > after, column.is_not(None))
        .order_by(model.id)
        .limit(size)
        .with_for_update()
    ).all()
    moved = []
    for row in batch:
        rotated = reencrypt(getattr(row, column.key))
        if rotated is not None:
            setattr(row, column.key, rotated)
            moved.append(row.id)
    session.flush()
    if moved:
        details = {
            "column": f"{model.__tablename__}.{column.key}",
            "checked": len(batch),
            "reencrypted": len(moved),
            "ids": [moved[0], moved[-1]],
        }
        audit.record(session, audit.actor(session), "instance_key.rotated", details=details)
    return Reencrypted(len(batch), len(moved), batch[-1].id if batch else None, moved)
