"""Shared SimCord fixtures for the bot tests: a real bot on the shipped model, in a virtual Discord.

`world` gives a running environment with a guild, a #imagine channel and two members (alice, bob).
`world.restart()` swaps in a fresh bot built the same way (same data folder), like a process restart.
Tests that need a different bot pass Settings fields, or `service=` a service factory
`(settings, waiter) -> GenerationService-like` (a fake renderer, a slow queue), through
`@pytest.mark.bot(...)`, e.g. `@pytest.mark.bot(default_steps=8, service=huge_noise_service)`.

Each bot's SQLite database starts as a copy of one migrated once per test process (`migrated_database`),
and each model a bot loads is read from disk once per test process (`PipelineCache`).
"""

from __future__ import annotations

import asyncio
import copy
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import simcord
from bot_helpers import BOT_BATCH_IMAGES

import generation.renderer
from bot.app import ImagineBot, create_bot
from bot.settings import Settings
from generation.queue import CallbackWaiter
from storage import Store


@pytest.fixture
def bot_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a test bot: a fresh data folder, CPU, few steps and one thread (the machine is shared),
    a fixed batch limit (bot_helpers.BOT_BATCH_IMAGES)."""
    marker = request.node.get_closest_marker("bot")
    overrides = {key: value for key, value in (marker.kwargs if marker else {}).items() if key != "service"}
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "device": "cpu", "dtype": "float32",
                              "default_steps": 4, "cpu_threads": 1, "log_level": "DEBUG",
                              "batch_images": BOT_BATCH_IMAGES, **overrides}
    return Settings(_env_file=None, **values)


class BotFactory:
    """Builds bots that share settings and data folder, and closes them all at the end."""

    def __init__(self, settings: Settings, service_factory: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.service_factory = service_factory
        self.env: simcord.Env | None = None
        self.bots: list[ImagineBot] = []
        self.queue_gate: asyncio.Event | None = None

    def idle_wait(self, awaitable: Any) -> Any:
        return self._idle(awaitable)

    async def _idle(self, awaitable: Any) -> Any:
        # The render queue idling is an expected external wait, not a hung bot.
        assert self.env is not None
        woken = await self.env.external_wait(awaitable, reason="render queue idle")
        while self.queue_gate is not None and not self.queue_gate.is_set():
            await self.env.external_wait(self.queue_gate.wait(), reason="render queue held by the test")
        return woken

    def hold_queue(self) -> None:
        """Keep submitted jobs queued (the worker waits) until release_queue()."""
        self.queue_gate = asyncio.Event()

    def release_queue(self) -> None:
        if self.queue_gate is not None:
            self.queue_gate.set()

    def __call__(self) -> ImagineBot:
        bot = create_bot(self.settings, waiter=CallbackWaiter(self.idle_wait), service_factory=self.service_factory)
        self.bots.append(bot)
        return bot

    async def close_all(self) -> None:
        # SimCord detaches bots without calling close(), so close their store and queue here.
        for bot in self.bots:
            await bot.close_resources()


@dataclass
class World:
    env: simcord.Env
    factory: BotFactory
    guild: Any
    channel: Any
    alice: Any
    bob: Any
    bots: list[ImagineBot] = field(default_factory=list)

    @property
    def bot(self) -> ImagineBot:
        return self.env.bot  # type: ignore[return-value]

    @property
    def store(self) -> Any:
        return self.bot.store

    async def restart(self) -> ImagineBot:
        """Replace the bot with a freshly built one on the same data, as after a process restart."""
        fresh = self.factory()
        await self.env.restart_bot(fresh)
        return fresh


class PipelineCache:
    """generation.renderer.load_pipeline, reading each model once per test process: every bot gets its own
    deep copy (modules, scheduler, tokenizers), so nothing a test does to its pipeline reaches another;
    the pixels are the same as a fresh load's."""

    def __init__(self, load: Callable[..., Any]) -> None:
        self._load = load
        self._pristine: dict[tuple[str, str], Any] = {}

    def __call__(self, source: Any, info: Any, dtype: Any) -> Any:
        key = (repr(source), str(dtype))  # a ModelSpec's repr holds every field: path, family, size...
        if key not in self._pristine:
            self._pristine[key] = self._load(source, info, dtype)
        return copy.deepcopy(self._pristine[key])


@pytest.fixture(scope="session")
def pipeline_cache() -> PipelineCache:
    return PipelineCache(generation.renderer.load_pipeline)


@pytest.fixture(autouse=True)
def cached_pipelines(pipeline_cache: PipelineCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generation.renderer, "load_pipeline", pipeline_cache)


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database at the newest schema, made once per test process: migrating a new file for each
    bot costs a tenth of a second of fsyncs; a copy, a few milliseconds (Store.open finds it at head)."""
    folder = tmp_path_factory.mktemp("migrated")

    async def migrate() -> None:
        await (await Store.open(None, folder)).close()

    asyncio.run(migrate())
    return folder / "imagine.db"


@pytest.fixture
def bot_factory(bot_settings: Settings, migrated_database: Path, request: pytest.FixtureRequest) -> BotFactory:
    if bot_settings.database_url is None:  # the default SQLite file, not a PostgreSQL test's database
        bot_settings.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database, bot_settings.data_dir / "imagine.db")
    marker = request.node.get_closest_marker("bot")
    service_factory = (marker.kwargs if marker else {}).get("service")
    return BotFactory(bot_settings, service_factory)


@pytest_asyncio.fixture
async def env(bot_factory: BotFactory, request: pytest.FixtureRequest) -> AsyncIterator[simcord.Env]:
    """A started SimCord Env around a fresh bot (named `env` so SimCord's plugin selects its clock)."""
    marker = request.node.get_closest_marker("simcord")
    options = {"settle_timeout": 30.0, **(marker.kwargs if marker else {})}
    environment = simcord.Env(bot_factory(), **options)
    bot_factory.env = environment
    await environment.start()
    try:
        yield environment
    finally:
        await environment.shutdown()
        await bot_factory.close_all()
        if environment.check_errors:
            environment._raise_errors_since(environment._errors_acknowledged)


@pytest_asyncio.fixture
async def world(env: simcord.Env, bot_factory: BotFactory) -> World:
    guild = env.create_guild("Imagine Test")
    channel = guild.create_text_channel("imagine")
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))
    return World(env, bot_factory, guild, channel, alice, bob)
