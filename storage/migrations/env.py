"""Alembic environment: run in code by storage.engine.migrate (connection passed in
config.attributes), or from the CLI:
`alembic -c storage/alembic.ini -x url=sqlite+aiosqlite:///data/imagine.db upgrade head`
(default without -x: the SQLite file data/imagine.db, the bot's default).
The URL is passed explicitly rather than read from the environment: the bot's settings are the
only reader of the environment."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from storage.engine import WRITE_OPTION, create_engine, default_url
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return (
        config.get_main_option("sqlalchemy.url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or default_url("data")
    )


def _run(connection: Connection) -> None:
    # Every migration in one transaction, the caller's (it commits): begun before Alembic looks at the
    # connection, so that Alembic runs inside it. Left to itself on SQLite (no transactional DDL, it
    # assumes) Alembic commits after each migration, and another process starting at that moment takes
    # the write lock (BEGIN IMMEDIATE) and applies the remaining migrations too.
    if not connection.in_transaction():
        connection.begin()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(**{WRITE_OPTION: True})
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    asyncio.run(_run_online())
