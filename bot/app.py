"""The bot object: what it owns, how it starts, how it stops.

`create_bot` is the public factory (used by `python -m bot`, the playground and the tests). Dependencies
are built from Settings in `setup_hook` unless injected; the bot closes only what it opened. This is where
the render queue is chosen, once: in-process (`LocalQueue`) or shared on PostgreSQL (`SharedQueue`, with a
`RenderWorker` in this process when LOCAL_WORKER=true). Everything else sees the `RenderQueue` interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import on_app_command_error
from bot.host import Host
from bot.intake import Intake
from bot.runner import JobRunner
from bot.services import Services
from bot.settings import Settings
from bot.sharding import ShardPlan
from bot.views import DYNAMIC_ITEMS
from generation import GenerationRequest, GenerationService
from generation.queue import PLAIN, RenderQueue, Waiter
from generation.queue.assembly import build_finisher, build_service, worker_config
from generation.queue.finish import Finisher
from generation.queue.local import LocalQueue
from generation.telemetry import HealthServer, Metrics, ReadinessCheck, Role, database_check, event_check, start_health
from storage import Store

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.cogs.imagine",
    "bot.cogs.history",
    "bot.cogs.member_defaults",
    "bot.cogs.queue",
    "bot.cogs.server_config",
    "bot.cogs.edit_commands",
    "bot.cogs.conversation",
)


class Closeable(Protocol):
    async def close(self) -> None: ...


def gateway_check(client: discord.Client) -> ReadinessCheck:
    """/readyz "gateway": connected to Discord."""
    async def gateway() -> bool:
        return client.is_ready() and not client.is_closed()

    return gateway


ServiceFactory = Callable[[Settings, Waiter], GenerationService]


class GuildGateTree(app_commands.CommandTree["ImagineBot"]):
    """Refuses commands outside `settings.allowed_guilds` (when that list is non-empty)."""

    async def interaction_check(self, interaction: discord.Interaction[ImagineBot]) -> bool:
        allowed = self.client.settings.allowed_guilds
        if allowed and interaction.guild_id not in allowed:
            await interaction.response.send_message(
                "imagine-bot is not enabled in this server (or in DMs); ask its operator to add it.",
                ephemeral=True)
            return False
        return True


class ImagineBot(Host):
    """A commands.Bot with its services (store, render queue, ...), the intake and the job runner attached.

    `services`, `store`, `queue`, `runner` and `intake` exist once setup_hook has run.
    """

    services: Services
    store: Store
    queue: RenderQueue
    runner: JobRunner
    intake: Intake

    def __init__(self, settings: Settings, *, store: Store | None = None, service: GenerationService | None = None,
                 waiter: Waiter = PLAIN, service_factory: ServiceFactory | None = None) -> None:
        # Slash commands, components and conversation turns; message content (privileged) only where the
        # operator enabled it (MESSAGE_CONTENT): without it replies that ping the bot, mentions and DMs are read.
        intents = discord.Intents.default()
        intents.message_content = settings.message_content
        # Every command may be used from a server install or a member's own install, in servers, DMs and
        # group DMs, unless it says otherwise (/config: servers that added the bot only).
        self.shard_plan = ShardPlan.from_settings(settings)
        sharding: dict[str, Any] = {}
        if isinstance(self, discord.AutoShardedClient):  # ShardedImagineBot
            sharding = {"shard_count": self.shard_plan.shard_count, "shard_ids": self.shard_plan.shard_ids}
        super().__init__(command_prefix=commands.when_mentioned, intents=intents,
                         tree_cls=GuildGateTree, help_command=None, **sharding,
                         allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
                         allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True,
                                                                         private_channel=True))
        self.settings = settings
        self._injected_store = store
        self._injected_service = service
        self.waiter = waiter
        self.service_factory = service_factory or build_service
        self._owned: list[Closeable] = []  # what setup_hook opened, closed in reverse order
        role = Role.BOT if settings.local_worker or not settings.shared_queue else Role.GATEWAY
        self.metrics = Metrics(role)  # this process's metrics: built once, injected where events happen
        self.model_loaded = asyncio.Event()  # /readyz "model", where this process renders
        self.health: HealthServer | None = None  # METRICS_PORT's server, once set up

    async def setup_hook(self) -> None:
        if self._injected_store is not None:
            self.store = self._injected_store
        else:
            self.store = await Store.open(self.settings.resolved_database_url, self.settings.data_dir,
                                          image_store=self.settings.image_store)
            self._owned.append(self.store)
        if self._injected_service is not None:
            scheduler = self._injected_service
        else:
            scheduler = self.service_factory(self.settings, self.waiter)
            self._owned.append(scheduler)
            await scheduler.start()
        scheduler.metrics = self.metrics
        finisher = build_finisher(self.settings, scheduler)
        self.queue = await self._open_queue(scheduler, finisher)
        self.services = Services(self.store, self.queue, self.settings, finisher, self.waiter, self.metrics)
        self.runner = JobRunner(self, self.services)
        self.intake = Intake(self, self.services, self.runner)
        self.tree.on_error = on_app_command_error  # type: ignore[method-assign]
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self.tree.sync()
        self._warm_up()
        await self._serve_health(scheduler)
        await self.recover()

    async def _serve_health(self, scheduler: GenerationService) -> None:
        """METRICS_PORT: /metrics, /healthz, /readyz (database; gateway connected; model, where it renders)."""
        checks = {"database": database_check(self.store.ping), "gateway": gateway_check(self)}
        if self.settings.metrics_port is not None and self.metrics.role is not Role.GATEWAY:
            checks["model"] = event_check(self.model_loaded)
            self.runner.spawn(self._load_default_model(scheduler), name="load the default model")
        self.health = await start_health(self.metrics, checks, port=self.settings.metrics_port,
                                         host=self.settings.metrics_host)
        if self.health is not None:
            self._owned.append(self.health)

    async def _load_default_model(self, scheduler: GenerationService) -> None:
        seconds = await scheduler.load_model(self.settings.default_model)
        self.metrics.model_load_finished(self.settings.default_model, seconds)
        self.model_loaded.set()

    async def _open_queue(self, scheduler: GenerationService, finisher: Finisher) -> RenderQueue:
        """The render queue Settings choose: in this process, or shared on PostgreSQL (SHARED_QUEUE)."""
        if not self.settings.shared_queue:
            return LocalQueue(scheduler, self.store, finisher, waiter=self.waiter, metrics=self.metrics)
        from generation.queue.shared import SharedQueue
        from generation.queue.worker import RenderWorker

        shared = SharedQueue(scheduler, self.store, per_owner_cap=self.settings.queue_per_user,
                             total_cap=self.settings.queue_total, poll_s=self.settings.queue_poll_s,
                             max_attempts=self.settings.max_render_attempts, waiter=self.waiter, metrics=self.metrics)
        await shared.start()
        self._owned.append(shared)
        if self.settings.local_worker:  # this process renders too, as one worker of the shared queue
            worker = RenderWorker(self.store, scheduler, finisher, worker_config(self.settings), waiter=self.waiter,
                                  metrics=self.metrics)
            await worker.start()
            self._owned.append(worker)
        return shared

    def _warm_up(self) -> None:
        """Read every model's tokenizer and config now, so /imagine's validation (before its defer) is fast."""
        for model in self.settings.model_names:
            try:
                # The model's own defaults (klein takes Euler only); an edit-only model validates as an edit.
                edit: dict[str, Any] = {"edit_mode": "instruction"} if self.queue.instruction_pictures(model) else {}
                self.queue.prepare(GenerationRequest(**{**self.queue.model_defaults(model), **edit,
                                                        "prompt": "warm up", "model": model}))
            except Exception:
                log.exception("warm-up validation of model %s failed; its first /imagine may be slow to answer",
                              model)

    async def recover(self) -> None:
        """Re-queue jobs a previous run left queued or running; post results it never posted.

        Their replies are edited while the stored interaction token lives, else they go to the channel.
        """
        if self.settings.shared_queue:  # rendering jobs belong to live workers; only expired leases return
            recovery = await self.store.recover_shared(self.settings.max_render_attempts)
        else:
            recovery = await self.store.recover(self.settings.max_render_attempts)
        recovery = self.shard_plan.mine(recovery)  # split gateways: each recovers its own shards' jobs
        for record in recovery.failed:
            self.runner.spawn(self.runner.report_recovered_failure(record), name=f"report job #{record.id}")
        for record in recovery.to_render:
            try:
                await self.runner.resume(record)
            except Exception:
                log.exception("could not re-queue job #%s after a restart", record.id)
        for record in recovery.to_deliver:
            self.runner.spawn(self.runner.deliver_recovered(record), name=f"deliver job #{record.id}")

    async def close(self) -> None:
        await self.close_resources()
        await super().close()

    async def close_resources(self) -> None:
        """Stop background work and close what setup_hook opened (injected objects stay open)."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            await runner.close()
        while self._owned:
            resource = self._owned.pop()
            try:
                await resource.close()
            except asyncio.CancelledError:
                # A task of the resource was cancelled from outside (a test harness detaching the bot);
                # only a cancellation of this very task should propagate.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                log.warning("%r was already stopped from outside", resource)
            except Exception:
                log.exception("error while closing %r", resource)


def create_bot(settings: Settings | None = None, *, store: Store | None = None,
               service: GenerationService | None = None, waiter: Waiter = PLAIN,
               service_factory: ServiceFactory | None = None) -> ImagineBot:
    """Build the bot. Nothing is opened until it logs in (setup_hook).

    `store` / `service` (the in-process scheduler) are used as given (already open and started; the caller
    closes them) instead of the ones setup_hook would build from `settings`. `service_factory(settings,
    waiter)` changes how setup_hook builds the scheduler it owns (tests: a fake renderer). `waiter` carries
    the render queue's waits on outside work (for work, for a result, for a notification): SimCord tests
    and the playground declare them external waits (`generation.queue.CallbackWaiter`).
    """
    settings = settings if settings is not None else Settings()
    kind = ShardedImagineBot if settings.shard_count is not None else ImagineBot
    return kind(settings, store=store, service=service, waiter=waiter, service_factory=service_factory)


class ShardedImagineBot(ImagineBot, commands.AutoShardedBot):
    """SHARD_COUNT set: the same bot on discord.py's AutoShardedBot, running the shards SHARD_IDS."""

