"""From an accepted request to a posted result: queue, status message, delivery, retries.

One JobRunner per bot. Commands and buttons validate first (`runner.validate`), defer with
`thinking=True`, then call `start_generation`; everything after that runs in a background task so the
interaction handler returns at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot import presentation
from bot.errors import UserFacingError, apology
from bot.records import request_from_record, request_to_params
from generation import GenerationRequest, JobCancelled, JobFailed, RequestError
from storage import CorruptImage, GenerationKind, ImageInput

if TYPE_CHECKING:
    from generation import GenerationService, Job, Progress
    from storage import GenerationRecord, Store

log = logging.getLogger(__name__)

# Discord keeps an interaction token for 15 minutes; leave a margin for a slow upload.
TOKEN_LIFETIME = datetime.timedelta(minutes=15)
TOKEN_MARGIN = datetime.timedelta(seconds=30)
# At most one status edit per this many seconds (Discord rate-limits webhook edits to ~5 per 5 s).
STATUS_EDIT_INTERVAL_S = 1.0
# Upload retries after a 5xx / 429: the waits between attempts (3 tries in all).
RETRY_DELAYS_S = (0.5, 1.5)


def token_usable(interaction: discord.Interaction) -> bool:
    """Whether the interaction's webhook token still has time for one more edit."""
    return discord.utils.utcnow() < interaction.created_at + TOKEN_LIFETIME - TOKEN_MARGIN


def _identity(awaitable: Awaitable[Any]) -> Awaitable[Any]:
    return awaitable


def _retryable(error: Exception) -> bool:
    """Worth another upload attempt: Discord's 5xx / 429, or the connection itself failing."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, OSError))


class StatusMessage:
    """The interaction's thinking message, used as a live status line until the result replaces it.

    Progress edits are throttled without timers: an offer is sent only when the last edit is at least
    STATUS_EDIT_INTERVAL_S old on `clock` (the event loop's by default) and none is in flight; otherwise
    it is dropped, since a newer step follows soon and the result replaces the line anyway. The first
    offer of a new stage (queued → rendering) always goes out. `finish()` stops them.
    """

    def __init__(self, interaction: discord.Interaction | None, spawn: Any,
                 clock: Callable[[], float] | None = None, interval_s: float = STATUS_EDIT_INTERVAL_S) -> None:
        self.interaction = interaction
        self._spawn = spawn
        self._clock = clock or asyncio.get_running_loop().time
        self._interval_s = interval_s
        self._last_edit = float("-inf")
        self._stage: str | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._closed = False

    async def show(self, **fields: Any) -> None:
        """Edit now (the first "queued" line)."""
        await self._edit(fields)

    def offer(self, stage: str, **fields: Any) -> bool:
        """Edit soon if the rate limit allows (or `stage` is new); False if this update was dropped."""
        if self._closed or self.interaction is None:
            return False
        if self._in_flight is not None and not self._in_flight.done():
            return False
        new_stage = stage != self._stage
        if not new_stage and self._clock() - self._last_edit < self._interval_s:
            return False
        self._stage = stage
        self._last_edit = self._clock()
        self._in_flight = self._spawn(self._edit(fields))
        return True

    async def finish(self, **fields: Any) -> None:
        """Stop progress edits (letting one in flight land first); show `fields` last when given."""
        self._closed = True
        if self._in_flight is not None:
            await asyncio.gather(self._in_flight, return_exceptions=True)
        if fields:
            await self._edit(fields)

    async def _edit(self, fields: dict[str, Any]) -> None:
        interaction = self.interaction
        if interaction is None or not token_usable(interaction):
            return
        self._last_edit = self._clock()
        try:
            await interaction.edit_original_response(**fields)
        except Exception as error:
            # A status line is worth no retry, and must never stop the job (a network blip here
            # would otherwise abort the delivery that follows): the next edit or the result supersedes it.
            log.info("status edit failed (%r); carrying on", error)


@dataclass
class Destination:
    """Where a result goes: the interaction's status message while its token lives, else the channel."""

    channel_id: int
    guild_id: int | None
    interaction: discord.Interaction | None = None


class JobRunner:
    """Runs generations for the bot: submit, follow progress, store the images, post the result."""

    def __init__(self, bot: discord.Client, store: Store, service: GenerationService, *,
                 retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
                 status_clock: Callable[[], float] | None = None,
                 queue_wait: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None) -> None:
        self.bot = bot
        self.store = store
        self.service = service
        self.retry_delays_s = retry_delays_s
        # What status-edit throttling measures time with (None = the event loop's clock), and how often.
        self.status_clock = status_clock
        self.status_interval_s = STATUS_EDIT_INTERVAL_S
        # Wraps the wait for a job's result: a wait on the render queue, like the service's idle wait
        # (SimCord declares both external; a held queue is then no hung bot).
        self.queue_wait = queue_wait or _identity
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ entry points

    def validate(self, request: GenerationRequest) -> GenerationRequest:
        """The request with seed and size filled in, or UserFacingError naming what is wrong.

        Cheap and synchronous: call it before deferring so errors can be ephemeral.
        """
        try:
            return self.service.prepare(request)
        except RequestError as error:
            raise UserFacingError(str(error)) from None

    async def start_generation(self, interaction: discord.Interaction, request: GenerationRequest,
                               kind: GenerationKind, parent_id: int | None = None) -> GenerationRecord:
        """Record `request`, queue it, and follow it to a posted result; returns the new record.

        Call after `interaction.response.defer(thinking=True)`: the thinking message becomes the
        status line ("Queued — position 2, ETA ~3 s" → "Rendering step 5/20" + preview) and is then
        edited into the result. If the token has expired by then, the result is posted in the channel
        instead. Returns once the job is queued; rendering and delivery continue in the background.
        Raises UserFacingError (already shown to the user on the status message) when the queue is full
        or the request is refused.
        """
        status = StatusMessage(interaction, self.spawn, self.status_clock, self.status_interval_s)
        try:
            prepared = self.validate(request)
        except UserFacingError as error:
            await status.finish(content=f"⚠️ {error}")
            raise
        record = await self.store.create_generation(
            owner_id=interaction.user.id, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
            kind=kind, parent_id=parent_id, params=request_to_params(prepared), init_image=prepared.init_image,
        )
        destination = Destination(interaction.channel_id, interaction.guild_id, interaction)
        try:
            job = self.service.submit(prepared, owner=str(interaction.user.id), key=str(record.id))
        except RequestError as error:  # QueueFull included
            await self._quietly(self.store.mark_failed(record.id, str(error)), "record the refusal", record.id)
            await status.finish(content=f"⚠️ {error}")
            raise UserFacingError(str(error)) from None
        except Exception as error:
            # Marked failed so that recovery does not render, after a restart, a job the user was told failed.
            log.exception("job #%s could not be queued", record.id)
            await self._quietly(self.store.mark_failed(record.id, f"internal error: {type(error).__name__}"),
                                "record the failure", record.id)
            await status.finish(content=apology(record.id))
            raise UserFacingError(apology(record.id)) from None
        from bot.cogs.buttons import status_view

        entry = self.service.snapshot().entry(job.key)
        await status.show(content=presentation.queued_status(prepared, entry), view=status_view(record.id))
        self.spawn(self._follow(job, record, prepared, destination, status), name=f"job #{record.id}")
        return record

    async def resume(self, record: GenerationRecord) -> None:
        """Re-queue a recovered generation; its result is posted in its channel (no token survives)."""
        try:
            init_image = await self.store.read_init_image(record.id) if record.has_init_image else None
            request = request_from_record(record, init_image)
            job = self.service.submit(request, owner=str(record.owner_id), key=str(record.id))
        except (RequestError, CorruptImage) as error:
            # Left queued it would fail the same way at every start; failed, it shows in /history with why.
            await self.store.mark_failed(record.id, f"could not be re-queued after a restart: {error}")
            return
        destination = Destination(record.channel_id, record.guild_id)
        self.spawn(self._follow(job, record, request, destination, StatusMessage(None, self.spawn)),
                   name=f"job #{record.id}")

    async def deliver_recovered(self, record: GenerationRecord) -> None:
        await self.deliver(record, Destination(record.channel_id, record.guild_id))

    # ------------------------------------------------------------------ background work

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run `coroutine` in the background; kept until done, closed with the runner, failures logged."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Nobody awaits a background task: without this its error would only surface at garbage collection.
            log.error("background task %r failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, job: Job, record: GenerationRecord, request: GenerationRequest,
                      destination: Destination, status: StatusMessage) -> None:
        marking_running: list[asyncio.Task[Any]] = []
        unsent_preview: list[Progress] = []  # the newest preview not shown yet (edits may be dropped)
        # Progress arrives through call_soon_threadsafe from the render thread, i.e. in that thread's
        # context; the work it starts belongs in this task's context (context variables of the client).
        context = contextvars.copy_context()

        def on_progress(progress: Progress) -> None:
            try:
                context.run(show_progress, progress)
            except Exception:
                # Raised here it would reach only the event loop's handler, without the job id.
                log.exception("job #%s: showing progress failed", record.id)

        def show_progress(progress: Progress) -> None:
            if not marking_running:
                marking_running.append(self.spawn(self.store.mark_running(record.id)))
            if progress.preview is not None:
                unsent_preview[:] = [progress]
            fields: dict[str, Any] = {"content": presentation.rendering_status(request, progress)}
            if unsent_preview:
                fields["attachments"] = [presentation.preview_file(unsent_preview[0])]
            if status.offer("rendering", **fields) and unsent_preview:
                unsent_preview.clear()

        job.add_progress_listener(on_progress)
        try:
            try:
                result = await self.queue_wait(job.result())
            finally:
                await asyncio.gather(*marking_running, return_exceptions=True)
            images = [
                ImageInput(index=index, image=rendered.image, seed=rendered.seed,
                           variation_seed=rendered.variation_seed, variation_strength=rendered.variation_strength)
                for index, rendered in enumerate(result.images)
            ]
            done = await self.store.mark_done(record.id, images, result.duration_s)
        except JobCancelled:
            await self._quietly(self.store.mark_cancelled(record.id), "record the cancellation", record.id)
            await status.finish(content=f"{presentation.status_header(request)}\n✖ Cancelled.", view=None)
            return
        except JobFailed as error:
            await self._quietly(self.store.mark_failed(record.id, error.reason), "record the failure", record.id)
            await status.finish(content=f"{presentation.status_header(request)}\n⚠️ {error.reason} (job #{record.id})",
                                view=None)
            return
        except Exception as error:
            log.exception("job #%s failed unexpectedly", record.id)
            await self._quietly(self.store.mark_failed(record.id, f"internal error: {type(error).__name__}"),
                                "record the failure", record.id)
            await status.finish(content=apology(record.id), view=None)
            return
        await status.finish()
        await self.deliver(done, destination)

    async def _quietly(self, step: Awaitable[Any], what: str, generation_id: int) -> None:
        """Await a bookkeeping step whose failure must not hide the outcome the user is about to see."""
        try:
            await step
        except Exception:
            log.exception("could not %s of job #%s", what, generation_id)

    # ------------------------------------------------------------------ delivery

    def _channel_upload_limit(self, guild_id: int | None) -> int:
        guild = self.bot.get_guild(guild_id) if guild_id is not None else None
        return guild.filesize_limit if guild is not None else presentation.DEFAULT_UPLOAD_LIMIT

    async def deliver(self, record: GenerationRecord, destination: Destination) -> discord.Message | None:
        """Post a finished generation; retries 5xx/429 with backoff; records the message or the failure.

        Never raises (but for cancellation): whatever goes wrong is logged with the job id, kept in the
        record as its delivery failure (so /history shows why), and told to the user while the token lives.
        """
        interaction = destination.interaction
        try:
            image_bytes = [await self.store.read_image(image) for image in record.images]
            message, last_error, interaction = await self._post(record, destination, image_bytes)
        except CorruptImage as error:
            reason = f"stored image unreadable: {error}"
        except Exception as error:
            log.exception("job #%s: posting the result failed unexpectedly", record.id)
            reason = f"internal error while posting: {type(error).__name__}"
        else:
            if message is not None:
                await self._quietly(self.store.record_delivery(record.id, message.channel.id, message.id),
                                    "record the delivery", record.id)
                return message
            reason = f"Discord refused the upload: {last_error}"
            log.error("job #%s: %s", record.id, reason)
        await self._quietly(self.store.record_delivery_failure(record.id, reason), "record the delivery failure",
                            record.id)
        if interaction is not None and token_usable(interaction):
            # The upload failed, a short text reply may not: tell the user where the result is.
            try:
                await interaction.followup.send(
                    f"⚠️ Generation #{record.id} is done but could not be posted here ({reason}). "
                    f"It is kept in your history: /show id:{record.id}", ephemeral=True)
            except discord.HTTPException:
                pass
        return None

    async def _post(self, record: GenerationRecord, destination: Destination, image_bytes: list[bytes],
                    ) -> tuple[discord.Message | None, Exception | None, discord.Interaction | None]:
        """Upload attempts: (the message, None, …) or (None, the last error, the interaction still in use)."""
        interaction = destination.interaction
        encoded: dict[int, presentation.EncodedImage] = {}
        last_error: Exception | None = None
        for attempt in range(len(self.retry_delays_s) + 1):
            if interaction is not None and not token_usable(interaction):
                interaction = None  # too old to edit: post a normal channel message instead
            limit = interaction.filesize_limit if interaction is not None else self._channel_upload_limit(
                destination.guild_id)
            if limit not in encoded:
                encoded[limit] = await asyncio.to_thread(
                    presentation.encode_result, record, image_bytes, size_limit=limit)
            result = presentation.result_message(record, encoded[limit], mention_owner=interaction is None)
            try:
                if interaction is not None:
                    message = await interaction.edit_original_response(
                        content=result.content, embed=result.embed, attachments=result.files(), view=result.view)
                else:
                    channel = self.bot.get_partial_messageable(destination.channel_id, guild_id=destination.guild_id)
                    message = await channel.send(content=result.content, embed=result.embed, files=result.files(),
                                                 view=result.view)
            except discord.NotFound as error:
                last_error = error
                if interaction is None:
                    break
                # The token expired or the status message was deleted: the channel still works.
                log.info("job #%s: original response gone (%s); posting in the channel", record.id, error)
                interaction = None
                continue
            except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                last_error = error
                if not _retryable(error) or attempt == len(self.retry_delays_s):
                    break
                log.warning("job #%s: upload failed (%r), retrying", record.id, error)
                await asyncio.sleep(self.retry_delays_s[attempt])
                continue
            return message, None, interaction
        return None, last_error, interaction
