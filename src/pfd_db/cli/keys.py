"""Instance-key commands: ``pfd-db key rotate``.

Rotating the instance key: list the new key first and keep the old one after it
(``PFD_DB_SECRET_KEY=new,old``, or both lines in the key file), run
``pfd-db key rotate`` to re-encrypt the TOTP and webhook signing secrets under the new key, then
drop the old key once no backup code made under it is still needed (a keyed
hash cannot be moved to a new key; see :mod:`pfd_db.crypto`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pfd_db.cli.database import WRITE, database
from pfd_db.cli.options import JsonOption, UrlOption
from pfd_db.cli.output import print_json, say

app = typer.Typer(help="Rotate the instance key.", no_args_is_help=True)

BATCH_DEFAULT = 500
BATCH_MAX = 100_000

BatchOption = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        max=BATCH_MAX,
        help="Secrets re-encrypted per transaction (each batch commits on its own).",
    ),
]


@app.command("rotate")
def rotate(
    batch_size: BatchOption = BATCH_DEFAULT,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-encrypt every TOTP secret and webhook signing secret under the first
    instance key, in batches.

    Secrets already under it are left alone, so running it again is harmless.
    Each batch that moved secrets is audited (``instance_key.rotated``).
    Backup codes cannot be re-hashed: they keep working while the old key
    stays listed after the new one.
    """
    from sqlalchemy.orm import Session

    from pfd_db.store.identity import twofactor
    from pfd_db.store.notify import webhooks

    kinds = {"totp_secrets": twofactor, "webhook_secrets": webhooks}
    counts = {kind: [0, 0] for kind in kinds}  # checked, re-encrypted
    with database(url, WRITE) as engine, Session(engine) as session:
        for kind, module in kinds.items():
            after: int | None = 0
            while after is not None:
                with session.begin():
                    batch = module.reencrypt_secrets(session, after_id=after, limit=batch_size)
                counts[kind][0] += batch.checked
                counts[kind][1] += batch.reencrypted
                after = batch.last_id
    (totp, totp_moved), (hooks, hooks_moved) = counts["totp_secrets"], counts["webhook_secrets"]
    if as_json:
        print_json(
            {
                "totp_secrets": totp,
                "reencrypted": totp_moved,
                "webhook_secrets": hooks,
                "webhook_reencrypted": hooks_moved,
            }
        )
        return
    say(
        f"re-encrypted {totp_moved} of {totp} TOTP secrets and {hooks_moved} of {hooks} webhook "
        "signing secrets under the first instance key; backup codes cannot be re-hashed and "
        "keep working only while the old key stays listed"
    )
