"""Alembic environment for pfd-db.

Run through ``pfd_db.migrations`` (which hands in a connection) or the stock
``alembic -c .../alembic.ini`` command (which makes one from the URL). Each
revision runs in its own transaction on both dialects, so one that fails part
way leaves the database at the revision before it. On SQLite, foreign keys are
switched off for the run (batch mode recreates tables, and dropping a parent
table would otherwise cascade) and checked with ``foreign_key_check`` before
each revision commits. On PostgreSQL they refuse to run through PgBouncer
(:func:`pfd_db.pgbouncer.refuse_migrations`), before anything is run.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from pfd_db.config import get_settings
from pfd_db.engine import make_engine
from pfd_db.errors import MigrationError
from pfd_db.migrations.compare import include_object_for
from pfd_db.models import Base
from pfd_db.pgbouncer import refuse_migrations

config = context.config


def database_url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().url
    )


def check_foreign_keys(ctx: MigrationContext, *_: Any, **__: Any) -> None:
    connection = ctx.connection
    if connection is not None and connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise MigrationError(f"revision left {len(broken)} broken foreign keys: {broken[:3]}")


def run_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def set_sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # On the driver's connection, outside any transaction: SQLite ignores it inside one.
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def run_online(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    refuse_migrations(connection)
    if sqlite:
        if connection.in_transaction():
            connection.commit()
        set_sqlite_foreign_keys(connection, on=False)
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=include_object_for(connection.dialect.name),
            render_as_batch=sqlite,
            transactional_ddl=True,
            transaction_per_migration=True,
            on_version_apply=check_foreign_keys,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            if connection.in_transaction():
                connection.rollback()
            set_sqlite_foreign_keys(connection, on=True)


if context.is_offline_mode():
    run_offline()
elif (given := config.attributes.get("connection")) is not None:
    run_online(given)
else:
    engine = make_engine(database_url())
    try:
        with engine.connect() as conn:
            run_online(conn)
    finally:
        engine.dispose()
