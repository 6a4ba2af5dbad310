"""Alembic: an empty database and one left at the previous revision both reach head in place."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import GenerationStatus, Store
from storage.engine import alembic_config, create_engine, default_url, migrate
from storage.models import Base
from storage_helpers import CHANNEL, OWNER, queue

REPO = Path(__file__).resolve().parents[2]

from storage.engine import head_revision

HEAD = head_revision()


async def _revision(store_or_engine: Store | AsyncEngine) -> str:
    engine = store_or_engine.engine if isinstance(store_or_engine, Store) else store_or_engine
    async with engine.connect() as connection:
        return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()


async def test_empty_database_upgrades_to_head_matching_the_models(store: Store) -> None:
    assert await _revision(store) == HEAD
    async with store.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == []  # the migrations build exactly the schema the models describe


async def test_database_at_0001_with_data_is_upgraded_in_place(
    database_url: str | None, data_dir: Path
) -> None:
    data_dir.mkdir(parents=True)
    engine = create_engine(database_url or default_url(data_dir))
    await migrate(engine, "0001")
    now = datetime.now(UTC)
    ids = []
    async with engine.begin() as connection:  # rows as the 0001 code wrote them
        await connection.execute(
            text("INSERT INTO users (id, settings, created_at) VALUES (:id, :settings, :now)"),
            {"id": OWNER, "settings": '{"width": 96}', "now": now},
        )
        for n, status in enumerate(["done", "queued", "running"], start=1):
            inserted = await connection.execute(
                text(
                    "INSERT INTO generations (owner_id, kind, status, attempts, prompt, seed, "
                    "width, height, created_at) VALUES (:owner, 'imagine', :status, 1, :prompt, "
                    ":seed, 64, 64, :now) RETURNING id"
                ),
                {"owner": OWNER, "status": status, "prompt": f"old {n}", "seed": n, "now": now},
            )
            ids.append(inserted.scalar_one())
        await connection.execute(
            text('INSERT INTO images (generation_id, "index", seed, variation_strength, width, height, '
                 "path, sha256) VALUES (:generation, 0, 1, 0.0, 64, 64, 'images/0/1-0.png', :sha)"),
            {"generation": ids[0], "sha": "0" * 64},
        )
    assert await _revision(engine) == "0001"
    await engine.dispose()

    store = await Store.open(database_url, data_dir)  # runs upgrade head on the old database
    try:
        assert await _revision(store) == HEAD
        assert await store.member_defaults(OWNER) == {"width": 96}
        old = await store.get(ids[0])
        assert old.prompt == "old 1" and old.status is GenerationStatus.DONE
        assert old.delivery_failure is None and len(old.images) == 1
        assert [r.prompt for r in await store.history(OWNER)] == ["old 3", "old 2", "old 1"]
        assert await store.count_history(OWNER, query="OLD") == 3

        recovery = await store.recover()
        assert [r.id for r in recovery.to_render] == ids[1:]
        assert [r.id for r in recovery.to_deliver] == [ids[0]]
        # The column 0002 added is usable on old rows and new ones alike.
        await store.record_delivery_failure(ids[0], "channel gone")
        assert (await store.recover()).to_deliver == []
        new = await queue(store, prompt="new after upgrade")
        assert new.id > max(ids)
    finally:
        await store.close()


STARTUP = """
import asyncio, sys
from storage import Store

async def main():
    store = await Store.open(sys.argv[1] or None, sys.argv[2])
    record = await store.create_generation(owner_id=1, guild_id=None, channel_id=None,
                                           kind="imagine", parent_id=None, params={"prompt": sys.argv[3]})
    print(record.id)
    await store.close()

asyncio.run(main())
"""


@pytest.mark.system(reason="two processes start on one database")
async def test_two_processes_starting_on_a_new_database_migrate_once(
    database_url: str | None, data_dir: Path
) -> None:
    # Real processes: each has its own Alembic context, so only the database lock (BEGIN
    # IMMEDIATE on SQLite, an advisory lock on PostgreSQL) keeps them from migrating twice.
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", STARTUP, database_url or "", str(data_dir), f"worker {n}",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for n in range(2)
    ]
    results = [await worker.communicate() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err.decode()[-2000:] for _, err in results]
    store = await Store.open(database_url, data_dir)
    try:
        assert await _revision(store) == HEAD
        assert sorted(r.prompt for r in await store.history(1)) == ["worker 0", "worker 1"]
    finally:
        await store.close()


async def test_a_migration_holds_the_sqlite_write_lock_from_its_first_statement_to_its_commit(data_dir: Path) -> None:
    # What keeps two processes from migrating one new database twice: the second can take the write lock
    # only once the first has committed every migration. Here a second connection (another process's, as
    # far as SQLite knows) tries to take it before each statement of the migration after the first.
    engine = create_engine(default_url(data_dir))
    statements: list[str] = []
    lock_was_free_before: list[str] = []

    def another_process_could_write() -> bool:
        other = sqlite3.connect(data_dir / "imagine.db", timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:  # database is locked
            return False
        finally:
            other.close()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def before(connection: object, cursor: object, statement: str, *rest: object) -> None:
        if statements and another_process_could_write():
            lock_was_free_before.append(statement)
        statements.append(statement)

    try:
        await migrate(engine)
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        assert await _revision(engine) == HEAD
    finally:
        await engine.dispose()
    assert statements[0] == "BEGIN IMMEDIATE" and len(statements) > 20  # every migration, from an empty file
    assert lock_was_free_before == []


async def test_two_stores_opened_at_once_in_one_process(database_url: str | None, data_dir: Path) -> None:
    stores = await asyncio.gather(Store.open(database_url, data_dir), Store.open(database_url, data_dir))
    try:
        assert [await _revision(store) for store in stores] == [HEAD, HEAD]
        record = await queue(stores[0])
        assert (await stores[1].get(record.id)).prompt == record.prompt
    finally:
        for store in stores:
            await store.close()


async def test_downgrade_to_0001_and_back(store: Store) -> None:
    record = await queue(store)
    await store.mark_cancelled(record.id)
    await store.record_delivery(record.id, channel_id=CHANNEL, message_id=3)
    async with store.engine.connect() as connection:
        await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0001"))
        await connection.commit()
    assert await _revision(store) == "0001"
    await migrate(store.engine)
    assert await _revision(store) == HEAD
    assert (await store.get(record.id)).message_id == 3


@pytest.mark.system(reason="the alembic command in a process")
def test_alembic_cli_uses_the_packaged_ini(tmp_path: Path) -> None:
    env = dict(os.environ)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO / "storage" / "alembic.ini"), "-x", f"url={url}"]
    subprocess.run([*alembic, "upgrade", "head"], check=True, env=env, cwd=tmp_path, capture_output=True)
    current = subprocess.run([*alembic, "current"], check=True, env=env, cwd=tmp_path,
                             capture_output=True, text=True)
    assert f"{HEAD} (head)" in current.stdout
