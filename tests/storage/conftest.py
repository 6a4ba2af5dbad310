"""Storage fixtures. Every test runs on a real SQLite file; set IMAGINE_TEST_POSTGRES_URL
(e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) to run each one on PostgreSQL
too, in a fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage import Store

POSTGRES_URL = os.environ.get("IMAGINE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None = the default SQLite file in the data directory."""
    if request.param == "sqlite":
        yield None
        return
    assert POSTGRES_URL is not None
    name = f"imagine_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


@pytest.fixture
async def store(database_url: str | None, data_dir: Path) -> AsyncIterator[Store]:
    store = await Store.open(database_url, data_dir)
    try:
        yield store
    finally:
        await store.close()
