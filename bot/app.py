"""The bot object: what it owns, how it starts, how it stops.

`create_bot` is the public factory (used by `python -m bot`, the playground and the tests). Dependencies
are built from Settings in `setup_hook` unless injected; the bot closes only what it opened.
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
from bot.intake import Intake
from bot.nsfw import ImageClassifier, build_classifier
from bot.runner import JobRunner
from bot.settings import Settings
from bot.views import DYNAMIC_ITEMS
from generation import GenerationRequest, GenerationService, Limits
from generation.service import IdleWait
from storage import Store

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.cogs.imagine",
    "bot.cogs.history",
    "bot.cogs.member_defaults",
    "bot.cogs.queue",
    "bot.cogs.server_config",
    "bot.cogs.edit_commands",
)


class Closeable(Protocol):
    async def close(self) -> None: ...


def build_service(settings: Settings, idle_wait: IdleWait | None) -> GenerationService:
    """The GenerationService that Settings describe (not started)."""
    from generation import ModelSource, Renderer, load_model_specs

    models: list[str | ModelSource]
    if settings.models_file is not None:
        models = list(load_model_specs(settings.models_file).values())  # ModelConfigError names the problem
    else:
        models = list(settings.model_names)
    renderer = Renderer(models[0], device=settings.device, dtype=settings.dtype, extra_models=tuple(models[1:]),
                        cpu_threads=settings.cpu_threads, compile_denoiser=settings.torch_compile,
                        offload=settings.offload, lora_dir=settings.lora_dir)
    limits = Limits(min_size=settings.min_size, max_size=settings.max_size, max_pixels=settings.max_pixels,
                    max_steps=settings.max_steps, max_count=settings.max_count, models=tuple(settings.model_names))
    return GenerationService(renderer, limits, per_owner_cap=settings.queue_per_user, total_cap=settings.queue_total,
                             idle_wait=idle_wait, batch_images=settings.batch_images)


ServiceFactory = Callable[[Settings, "IdleWait | None"], GenerationService]


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


class ImagineBot(commands.Bot):
    """A commands.Bot with the store, the generation service, the intake and the job runner attached.

    `store`, `service`, `runner` and `intake` exist once setup_hook has run (injected ones at once).
    `nsfw_classifier` is the optional NSFW_CLASSIFIER (None = only the model's own safety checker).
    """

    store: Store
    service: GenerationService
    runner: JobRunner
    intake: Intake
    nsfw_classifier: ImageClassifier | None

    def __init__(self, settings: Settings, *, store: Store | None = None, service: GenerationService | None = None,
                 idle_wait: IdleWait | None = None, service_factory: ServiceFactory | None = None) -> None:
        # Slash commands and components only: no privileged intents, no message content.
        # Every command may be used from a server install or a member's own install, in servers, DMs and
        # group DMs, unless it says otherwise (/config: servers that added the bot only).
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default(),
                         tree_cls=GuildGateTree, help_command=None,
                         allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
                         allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True,
                                                                         private_channel=True))
        self.settings = settings
        self._injected_store = store
        self._injected_service = service
        self.idle_wait = idle_wait
        self.service_factory = service_factory or build_service
        self._owned: list[Closeable] = []  # what setup_hook opened, closed in reverse order

    async def setup_hook(self) -> None:
        if self._injected_store is not None:
            self.store = self._injected_store
        else:
            self.store = await Store.open(self.settings.resolved_database_url, self.settings.data_dir,
                                          image_store=self.settings.image_store)
            self._owned.append(self.store)
        if self._injected_service is not None:
            self.service = self._injected_service
        else:
            self.service = self.service_factory(self.settings, self.idle_wait)
            self._owned.append(self.service)
            await self.service.start()
        self.nsfw_classifier = build_classifier(self.settings)
        self.runner = JobRunner(self, self.store, self.service, queue_wait=self.idle_wait)
        if self.settings.shared_queue:  # render workers elsewhere: service and runner follow the database
            from bot import shared_queue

            await shared_queue.attach(self)
        self.intake = Intake(self)
        self.tree.on_error = on_app_command_error  # type: ignore[method-assign]
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self.tree.sync()
        self._warm_up()
        await self.recover()

    def _warm_up(self) -> None:
        """Read every model's tokenizer and config now, so /imagine's validation (before its defer) is fast."""
        for model in self.settings.model_names:
            try:
                self.service.prepare(GenerationRequest(prompt="warm up", model=model))
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
               service: GenerationService | None = None, idle_wait: IdleWait | None = None,
               service_factory: ServiceFactory | None = None) -> ImagineBot:
    """Build the bot. Nothing is opened until it logs in (setup_hook).

    `store` / `service` are used as given (already open and started; the caller closes them) instead of
    the ones setup_hook would build from `settings`. `service_factory(settings, idle_wait)` changes how
    setup_hook builds the service it owns (tests: a fake renderer). `idle_wait` wraps the waits on the
    render queue (its wait for work, the runner's wait for a result): SimCord tests and the playground
    declare them external waits.
    """
    return ImagineBot(settings if settings is not None else Settings(), store=store, service=service,
                      idle_wait=idle_wait, service_factory=service_factory)
