"""Storage fixtures. Every test runs on a real SQLite file and on PostgreSQL, in a fresh database per test:
the server IMAGINE_TEST_POSTGRES_URL names (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres), else
a throwaway one the session starts from the machine's binaries (tests/postgres_server.py; skipped with the
reason where none can start)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Store

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.system(reason="PostgreSQL"))]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None = the default SQLite file in the data directory."""
    if request.param == "sqlite":
        yield None
        return
    from postgres_server import fresh_database

    async with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
async def store(database_url: str | None, data_dir: Path) -> AsyncIterator[Store]:
    store = await Store.open(database_url, data_dir)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def shared(postgres_database: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a fresh PostgreSQL database only (the shared queue's claims need it)."""
    store = await Store.open(postgres_database, tmp_path / "data")
    try:
        yield store
    finally:
        await store.close()
