"""Engine setup: SQLite (WAL, foreign keys, busy timeout, BEGIN IMMEDIATE for writes) or any
other SQLAlchemy async URL (PostgreSQL via asyncpg), plus Alembic migrations run in code."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Execution option a write unit of work sets; on SQLite it turns BEGIN into BEGIN IMMEDIATE.
WRITE_OPTION = "imagine_write"
BUSY_TIMEOUT_MS = 30_000
WAL_ATTEMPTS = 50


def default_url(data_dir: Path | str) -> str:
    return f"sqlite+aiosqlite:///{(Path(data_dir) / 'imagine.db').resolve()}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if not is_sqlite(url):
        return create_async_engine(url, pool_pre_ping=True, **kwargs)
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (the "begin" hook below) instead of
        # the sqlite3 module, which would otherwise open transactions lazily on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, much faster
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY at
        # once (no busy wait) if another connection wrote meanwhile; IMMEDIATE takes the
        # write lock up front, so concurrent writers queue on busy_timeout instead.
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def _enable_wal(cursor: Any) -> None:
    """WAL: readers never block the writer. Switching a brand-new file to WAL fails at once
    (no busy wait) if another process is switching it too, so retry briefly; once the file is
    in WAL mode (it stays so) this is a no-op read."""
    for attempt in range(1, WAL_ATTEMPTS + 1):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError: "database is locked"
            if attempt == WAL_ATTEMPTS or "locked" not in str(exc):
                raise
            log.info("switching to WAL mode: database locked, retry %d/%d", attempt, WAL_ATTEMPTS)
            time.sleep(0.02)  # startup only, and only in this race


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic config built in code: migrations live inside the package, no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id (what Store.open upgrades to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


# Any fixed number: workers starting together on one PostgreSQL database take turns migrating.
_MIGRATION_LOCK_KEY = 0x1A61_7E_B07


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
    # (On SQLite the connection's BEGIN IMMEDIATE already makes a second process wait.)
    command.upgrade(alembic_config(connection), revision)


# Alembic keeps its running context in a module global, so two migrations interleaving on one
# event loop (two Stores opened at once) would run on each other's connection: take turns.
_migration_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to `revision` on an open engine (Store.open calls this)."""
    lock = _migration_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, engine.connect() as connection:
        connection = await connection.execution_options(**{WRITE_OPTION: True})
        await connection.run_sync(_upgrade, revision)
        await connection.commit()
    log.info("database schema at %s", revision)
