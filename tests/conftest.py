"""Test-wide setup: no model hub, ever; the tiers `make check` and `make test` select (markers in pyproject)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Two pytest workers on two cores (Makefile): one torch thread each, on every thread that renders (OpenMP
# reads this once, before torch loads); a second thread per worker would only oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


import gc  # noqa: E402
import platform  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from tiers import ProcessGuard, mark_postgres_tests  # noqa: E402

# Runs `uname -p` once per process and caches it (the OpenAI client asks, for its headers): here, not
# inside whichever test asks first (the process guard would refuse it).
platform.processor()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_postgres_tests(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    # What the test modules imported (torch, diffusers, transformers, discord: millions of objects) lives
    # to the end; frozen, it is left out of every full garbage collection (a third of a second each).
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # The same after each test: its garbage collected, what outlives it (session fixtures) frozen.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def process_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessGuard | None]:
    """`make check` is in-process: a test that starts a process (a CLI, a server, a harness) is `system`."""
    if request.node.get_closest_marker("system") is not None:
        yield None
        return
    guard = ProcessGuard(request.node.nodeid)
    guard.install(monkeypatch)
    yield guard
    if guard.attempts:
        pytest.fail(f"{guard.test} started processes outside the system tier: {guard.attempts}", pytrace=False)


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
