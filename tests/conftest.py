"""Test-wide setup: no model hub, ever."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres_url() -> object:
    """An admin URL of a PostgreSQL server for this test session: IMAGINE_TEST_POSTGRES_URL if set, else a
    throwaway server started from the machine's binaries (skips with the reason where none can start)."""
    given = os.environ.get("IMAGINE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    import postgres_server

    try:
        server = postgres_server.start()
    except postgres_server.Unavailable as error:
        pytest.skip(f"PostgreSQL unavailable: {error}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def postgres_database(postgres_url: str) -> object:
    """A fresh, empty database on the session's PostgreSQL server (an asyncpg URL), dropped afterwards."""
    from postgres_server import fresh_database

    async with fresh_database(postgres_url) as url:
        yield url
