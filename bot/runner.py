"""From a recorded job to a posted result: init image, queue, status line, delivery, retries.

One JobRunner per bot. `Intake.submit` records a job and calls `start`; recovery calls `resume` and
`deliver_recovered`. Everything here runs in background tasks, so interaction handlers return at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from PIL import Image

from bot import modlog, presentation
from bot.errors import apology
from bot.policy import nsfw_decision
from bot.record_requests import request_from_record
from bot.reply import DEFAULT_UPLOAD_LIMIT, Reply
from bot.views import result_layout, result_view, status_view
from generation import GenerationRequest, JobCancelled, JobFailed, RequestError
from generation.editing import blend_strip_png
from generation.prompt_words import skipped_note, skipped_words_of
from generation.service import IdleWait
from storage import CorruptImage, GenerationKind, ImageInput

if TYPE_CHECKING:
    from generation import GenerationService, Job, Progress, Reservation
    from storage import GenerationRecord, Store

log = logging.getLogger(__name__)

# At most one status edit per this many seconds (Discord rate-limits webhook edits to ~5 per 5 s).
STATUS_EDIT_INTERVAL_S = 1.0
# Upload retries after a 5xx / 429: the waits between attempts (3 tries in all).
RETRY_DELAYS_S = (0.5, 1.5)
# How far back recovery looks in a channel for a result it may have posted just before dying.
RECENT_MESSAGES = 50
# Decoding is checked in full before rendering; this bounds the memory that takes (a phone photo fits).
MAX_INIT_IMAGE_PIXELS = 4096 * 4096
INIT_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


class JobProblem(Exception):
    """A job cannot go on for a reason the user can act on; `str()` is shown to them privately."""


NSFW_SOURCES = {"safety_checker": "the model's own safety checker", "classifier": "the NSFW classifier",
                "unchecked": "nothing (made in an age-restricted channel, where results are not classified)"}


@dataclasses.dataclass(frozen=True)
class Screening:
    """What the content policy makes of a finished result in one place: "post", "spoiler" or "hold"."""

    action: str
    flagged_by: frozenset[str] = frozenset()
    policy: str = "block"
    age_restricted: bool = False

    def reason(self, generation_id: int) -> str:
        """Why a held result was not posted (for its owner and /history)."""
        if "safety_checker" in self.flagged_by:
            return (f"the model's own safety checker flagged generation #{generation_id} as not safe for work, "
                    "so it came out blank and was not posted")
        if self.flagged_by == {"unchecked"}:
            return (f"generation #{generation_id} was made in an age-restricted channel, where results are not "
                    "checked for NSFW content, and the content policy here holds unchecked images back")
        return (f"generation #{generation_id} was flagged as not safe for work by "
                f"{' and '.join(NSFW_SOURCES.get(source, source) for source in sorted(self.flagged_by))}; "
                "the content policy here holds such images back outside age-restricted channels")


def spoilered(result: presentation.ResultMessage) -> presentation.ResultMessage:
    """The same message with its image as a spoiler (`SPOILER_` file name) and no unblurred embed copy."""
    embed = result.embed.copy()
    embed.set_image(url=None)
    image = dataclasses.replace(result.image, filename=f"SPOILER_{result.image.filename}")
    return dataclasses.replace(result, embed=embed, image=image)


def _identity(awaitable: Awaitable[Any]) -> Awaitable[Any]:
    return awaitable


def _retryable(error: Exception) -> bool:
    """Worth another upload attempt: Discord's 5xx / 429, or the connection itself failing."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, OSError))


def _reply_gone(error: Exception) -> bool:
    """A 4xx on the interaction's webhook (but for rate limits): no use trying that reply again."""
    return isinstance(error, discord.HTTPException) and 400 <= error.status < 500 and error.status != 429


def delivery_nonce(generation_id: int) -> str:
    """Discord drops a second message with the same nonce sent within a few minutes (enforce_nonce)."""
    return f"imagine-{generation_id}"


class StatusMessage:
    """The reply's thinking message, used as a live status line until the result replaces it.

    Progress edits are throttled without timers: an offer is sent only when the last edit is at least
    STATUS_EDIT_INTERVAL_S old on `clock` (the event loop's by default) and none is in flight; otherwise
    it is dropped, since a newer step follows soon and the result replaces the line anyway. The first
    offer of a new stage (queued → rendering) always goes out. `finish()` stops them.
    """

    def __init__(self, reply: Reply | None, spawn: Callable[..., asyncio.Task[Any]],
                 clock: Callable[[], float] | None = None, interval_s: float = STATUS_EDIT_INTERVAL_S) -> None:
        self.reply = reply
        self._spawn = spawn
        self._clock = clock or asyncio.get_running_loop().time
        self._interval_s = interval_s
        self._last_edit = float("-inf")
        self._stage: str | None = None
        self._in_flight: asyncio.Task[Any] | None = None
        self._closed = False

    async def show(self, stage: str = "queued", **fields: Any) -> None:
        """Edit now (the first "queued" line); later offers wait for it, so they land after it."""
        self._stage = stage
        self._in_flight = self._spawn(self._edit(fields))
        await self._in_flight

    def offer(self, stage: str, **fields: Any) -> bool:
        """Edit soon if the rate limit allows (or `stage` is new); False if this update was dropped.

        A new stage is never dropped: it waits for an edit in flight, so the lines land in order.
        """
        if self._closed or self.reply is None:
            return False
        new_stage = stage != self._stage
        in_flight = self._in_flight if self._in_flight is not None and not self._in_flight.done() else None
        if in_flight is not None and not new_stage:
            return False
        if not new_stage and self._clock() - self._last_edit < self._interval_s:
            return False
        self._stage = stage
        self._last_edit = self._clock()
        self._in_flight = self._spawn(self._edit_after(in_flight, fields))
        return True

    async def _edit_after(self, previous: asyncio.Task[Any] | None, fields: dict[str, Any]) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self._edit(fields)

    async def finish(self, **fields: Any) -> None:
        """Stop progress edits (letting one in flight land first); show `fields` last when given."""
        self._closed = True
        if self._in_flight is not None:
            await asyncio.gather(self._in_flight, return_exceptions=True)
        if fields:
            await self._edit(fields)

    async def _edit(self, fields: dict[str, Any]) -> None:
        reply = self.reply
        if reply is None or not reply.usable():
            return
        self._last_edit = self._clock()
        try:
            await reply.edit(**fields)
        except Exception as error:
            # A status line is worth no retry, and must never stop the job: the next edit or the result
            # supersedes it.
            log.info("status edit failed (%r); carrying on", error)


class JobRunner:
    """Runs recorded generations for the bot: render (or copy), follow progress, store, post."""

    def __init__(self, bot: discord.Client, store: Store, service: GenerationService, *,
                 retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
                 status_clock: Callable[[], float] | None = None,
                 queue_wait: IdleWait | None = None) -> None:
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
        # Status lines of jobs still waiting in the queue, kept up to date as the queue moves.
        self._waiting: dict[str, tuple[StatusMessage, GenerationRequest]] = {}

    # ------------------------------------------------------------------ entry points

    def start(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
              reply: Reply | None, attachment: discord.Attachment | None = None) -> None:
        """Carry a just-recorded job to its result in the background (`Intake.submit` calls this)."""
        self.spawn(self._run(record, request, reservation, reply, attachment), name=f"job #{record.id}")

    async def resume(self, record: GenerationRecord) -> None:
        """Queue a generation found queued at start-up; its reply is edited while its token lives."""
        reply = Reply.from_record(self.bot, record)
        try:
            init_image = await self.store.read_init_image(record.id) if record.init_image_url is None else None
            request = self.service.prepare(request_from_record(record, init_image))
        except (RequestError, CorruptImage) as error:
            # Left queued it would fail the same way at every start; failed, it shows in /history with why.
            reason = f"could not be queued again after a restart: {error}"
            await self.store.mark_failed(record.id, reason)
            await self._show_failure(record, request_from_record(record), reason, reply)
            return
        attachment_url = record.init_image_url
        self.spawn(self._run(record, request, None, reply, None, attachment_url=attachment_url),
                   name=f"job #{record.id}")

    async def deliver_recovered(self, record: GenerationRecord) -> None:
        await self.deliver(record, Reply.from_record(self.bot, record))

    async def report_recovered_failure(self, record: GenerationRecord) -> None:
        """A job that failed during recovery (it stopped the renderer too often): tell its owner."""
        reason = record.failure_reason or "it was interrupted"
        await self._show_failure(record, request_from_record(record), reason, Reply.from_record(self.bot, record))
        await self._quietly(self.store.clear_interaction(record.id), "forget the interaction", record.id)

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

    async def _run(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
                   reply: Reply | None, attachment: discord.Attachment | None, *,
                   attachment_url: str | None = None) -> None:
        status = StatusMessage(reply, self.spawn, self.status_clock, self.status_interval_s)
        try:
            if record.kind is GenerationKind.BLEND and (attachment is not None or attachment_url is not None):
                init_image = await self._download_blend(record, request)
                await self.store.attach_init_image(record.id, init_image)
                request = request.replace(init_image=init_image)
            elif attachment is not None or attachment_url is not None:
                init_image = await self._download_init_image(attachment, attachment_url)
                await self.store.attach_init_image(record.id, init_image)
                request = request.replace(init_image=init_image)
            if record.kind is GenerationKind.PICK:
                done = await self._copy_picked_image(record)
            else:
                done = await self._render(record, request, reservation, status)
        except JobProblem as problem:
            await self._fail(record, request, str(problem), status)
            return
        except JobCancelled:
            await self._quietly(self.store.mark_cancelled(record.id), "record the cancellation", record.id)
            await status.finish(content=f"{presentation.status_header(request)}\n✖ Cancelled.", view=None)
            return
        except JobFailed as error:
            await self._fail(record, request, error.reason, status)
            return
        except Exception as error:
            log.exception("job #%s failed unexpectedly", record.id)
            await self._quietly(self.store.mark_failed(record.id, f"internal error: {type(error).__name__}"),
                                "record the failure", record.id)
            await status.finish(content=apology(record.id), view=None)
            return
        finally:
            if reservation is not None:
                reservation.release()  # a no-op once submit() used it
            if self._waiting.pop(str(record.id), None) is not None:  # left the queue without starting
                self._refresh_positions()
        await status.finish()
        await self.deliver(done, reply)

    async def _download_init_image(self, attachment: discord.Attachment | None, url: str | None) -> bytes:
        """The init image's bytes, once they have decoded as a picture (JobProblem if not)."""
        try:
            if attachment is not None:
                data = await attachment.read()
            else:
                assert url is not None
                data = await self.bot.http.get_from_cdn(url)
        except (discord.HTTPException, aiohttp.ClientError) as error:
            status = getattr(error, "status", None)
            raise JobProblem(f"init_image could not be downloaded from Discord (HTTP {status}); "
                             "attach it again.") from None
        await asyncio.to_thread(check_init_image, data)
        return data

    async def _download_blend(self, record: GenerationRecord, request: GenerationRequest) -> bytes:
        """/blend: each source (the URLs recorded one a line), checked, then side by side as one init image."""
        sources = [await self._download_init_image(None, url) for url in (record.init_image_url or "").split("\n")]
        assert request.width is not None and request.height is not None
        return await asyncio.to_thread(blend_strip_png, sources, request.width, request.height)

    async def _copy_picked_image(self, record: GenerationRecord) -> GenerationRecord:
        """A pick (U1–U4): the parent's image, stored again as this generation's only image."""
        await self.store.mark_running(record.id)
        parent = await self.store.get(record.parent_id) if record.parent_id is not None else None
        index = record.source_index or 0
        if parent is None or index >= len(parent.images):
            raise JobProblem("the original image is gone (it was deleted), so it can't be picked.")
        image = parent.images[index]
        png = await self.store.read_image(image)  # the same file, metadata and all
        return await self.store.mark_done(record.id, [ImageInput(
            index=0, png=png, seed=image.seed, variation_seed=image.variation_seed,
            variation_strength=image.variation_strength, nsfw=image.nsfw,
            batch_size=image.batch_size, batch_index=image.batch_index)], 0.0)

    async def _render(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
                      status: StatusMessage) -> GenerationRecord:
        job = self.service.submit(request, owner=str(record.owner_id), key=str(record.id), reservation=reservation,
                                  enforce_caps=False, before_start=lambda: self._mark_running(record.id))
        entry = self.service.snapshot().entry(job.key)
        await status.show(content=presentation.queued_status(request, entry), view=status_view(record.id))
        self._waiting[job.key] = (status, request)
        self._follow_progress(job, record, request, status)
        result = await self.queue_wait(job.result())
        flags = await self._nsfw_flags(record, result.images)
        pngs = await asyncio.to_thread(lambda: [self.service.png(result.request, rendered) for rendered in result.images])
        images = [
            ImageInput(index=index, png=png, seed=rendered.seed, variation_seed=rendered.variation_seed,
                       variation_strength=rendered.variation_strength, nsfw=flag,
                       batch_size=rendered.place.size, batch_index=rendered.place.index)
            for index, (rendered, png, flag) in enumerate(zip(result.images, pngs, flags))
        ]
        return await self.store.mark_done(record.id, images, result.duration_s)

    # ------------------------------------------------------------------ content policy

    async def _nsfw_flags(self, record: GenerationRecord, rendered: list[Any]) -> list[str | None]:
        """Per image: "safety_checker" (the model's own checker), "classifier" (NSFW_CLASSIFIER) or None.

        The classifier runs only on results bound for a channel that is not age-restricted; there its
        images are marked "unchecked", so a /show elsewhere treats them by the policy of that place.
        """
        flags: list[str | None] = ["safety_checker" if getattr(image, "nsfw", False) else None for image in rendered]
        classifier = getattr(self.bot, "nsfw_classifier", None)
        unchecked = [index for index, flag in enumerate(flags) if flag is None]
        if classifier is None or not unchecked:
            return flags
        if self.age_restricted(record.channel_id):
            return [flag or "unchecked" for flag in flags]
        try:
            verdicts = await asyncio.to_thread(classifier.flags, [rendered[index].image for index in unchecked])
        except Exception:
            # A broken classifier must not lose the render; the result is then treated as flagged.
            log.exception("job #%s: the NSFW classifier failed; holding the result as flagged", record.id)
            verdicts = [True] * len(unchecked)
        for index, flagged in zip(unchecked, verdicts):
            if flagged:
                flags[index] = "classifier"
        return flags

    def age_restricted(self, channel_id: int | None) -> bool:
        """Whether the channel is age-restricted (Discord's NSFW channel setting; a thread follows its parent)."""
        channel = self.bot.get_channel(channel_id) if channel_id is not None else None
        is_nsfw = getattr(channel, "is_nsfw", None)
        return bool(is_nsfw()) if callable(is_nsfw) else False

    async def bot_in_guild(self, guild_id: int | None) -> bool:
        """Whether the bot is a member of that server (False in DMs and where only a member's own install
        reaches). Waits for the gateway's guild list first: recovery runs before it has arrived."""
        if guild_id is None:
            return False
        if not self.bot.is_ready():
            await self.bot.wait_until_ready()
        return self.bot.get_guild(guild_id) is not None

    async def screen(self, record: GenerationRecord, guild_id: int | None, channel_id: int | None) -> Screening:
        """What the content policy says about posting `record` in that channel."""
        flagged_by = frozenset(image.nsfw for image in record.images if image.nsfw)
        settings = getattr(self.bot, "settings", None)
        policy: str = settings.nsfw_policy if settings is not None else "block"
        if flagged_by and await self.bot_in_guild(guild_id):
            assert guild_id is not None
            policy = (await self.store.guild_config(guild_id)).nsfw_policy or policy
        age_restricted = self.age_restricted(channel_id)
        action = nsfw_decision(flagged_by=set(flagged_by), age_restricted=age_restricted, policy=policy)
        return Screening(action, flagged_by, policy, age_restricted)

    async def _hold(self, record: GenerationRecord, screening: Screening, reply: Reply | None) -> None:
        """Keep a flagged result out of the channel: in /history (flagged), its owner told privately."""
        reason = screening.reason(record.id)
        await self._quietly(self.store.record_delivery_failure(record.id, f"held back: {reason}"),
                            "record the hold", record.id)
        public = f"🔞 Job #{record.id}: the result was held back by the content policy."
        await self._tell_owner(record, reply, public,
                               private=f"🔞 {reason[0].upper()}{reason[1:]}. It is kept in your /history.",
                               in_channel=f"{public} /history lists it.")

    async def _log_nsfw(self, record: GenerationRecord, screening: Screening, message: discord.Message | None) -> None:
        sources = " and ".join(NSFW_SOURCES.get(source, source) for source in sorted(screening.flagged_by))
        outcome = {"hold": "held back", "spoiler": "posted as a spoiler", "post": "posted"}[screening.action]
        where = (modlog.link(record.guild_id, message.channel.id, message.id) if message is not None
                 else modlog.link(record.guild_id, record.channel_id))
        await modlog.post(self.bot, self.store, record.guild_id, "nsfw",
                          f"generation #{record.id} of <@{record.owner_id}> flagged by {sources}: {outcome} "
                          f"(policy {screening.policy}) — {where}")

    async def _mark_running(self, generation_id: int) -> None:
        await self.store.mark_running(generation_id)
        self._waiting.pop(str(generation_id), None)
        self._refresh_positions()

    def _refresh_positions(self) -> None:
        """The queue moved (a job started or left it): each waiting job's line shows its new place."""
        snapshot = self.service.snapshot()
        for key, (status, request) in list(self._waiting.items()):
            entry = snapshot.entry(key)
            if entry is not None and entry.position > 0:
                status.offer(f"queued {entry.position}", content=presentation.queued_status(request, entry))

    def _follow_progress(self, job: Job, record: GenerationRecord, request: GenerationRequest,
                         status: StatusMessage) -> None:
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
            if progress.preview is not None:
                unsent_preview[:] = [progress]
            fields: dict[str, Any] = {"content": presentation.rendering_status(request, progress)}
            if unsent_preview:
                fields["attachments"] = [presentation.preview_file(unsent_preview[0])]
            if status.offer("rendering", **fields) and unsent_preview:
                unsent_preview.clear()

        job.add_progress_listener(on_progress)

    async def _fail(self, record: GenerationRecord, request: GenerationRequest, reason: str,
                    status: StatusMessage) -> None:
        await self._quietly(self.store.mark_failed(record.id, reason), "record the failure", record.id)
        await status.finish()
        await self._show_failure(record, request, reason, status.reply)

    async def _show_failure(self, record: GenerationRecord, request: GenerationRequest, reason: str,
                            reply: Reply | None) -> None:
        """The public line says only that the job failed; the reason goes privately to its owner."""
        await self._tell_owner(record, reply, f"{presentation.status_header(request)}\n⚠️ Job #{record.id} failed.",
                               private=f"⚠️ Job #{record.id} failed: {reason}",
                               in_channel=f"⚠️ Job #{record.id} failed: {reason}")

    async def _tell_owner(self, record: GenerationRecord, reply: Reply | None, public: str, *, private: str,
                          in_channel: str) -> None:
        """`public` on the reply and `private` to the owner while the reply lives; else `in_channel`,
        mentioning the owner, where the bot is in the server. What cannot be shown stays in /history."""
        if reply is not None and reply.usable():
            try:
                await reply.edit(content=public, embed=None, attachments=[], view=None)
                await reply.send_private(private)
                return
            except discord.HTTPException as error:
                log.info("job #%s: the reply is unusable (%s); telling the channel", record.id, error)
        if not await self.bot_in_guild(record.guild_id):
            log.info("job #%s: no reply and no channel to tell the owner; it is in /history", record.id)
            return
        try:
            channel = self.bot.get_partial_messageable(record.channel_id or 0, guild_id=record.guild_id)
            await channel.send(f"<@{record.owner_id}> {in_channel}", allowed_mentions=discord.AllowedMentions(users=True))
        except discord.HTTPException as error:
            log.info("job #%s: the owner could not be told (%s); it is in /history", record.id, error)

    async def _quietly(self, step: Awaitable[Any], what: str, generation_id: int) -> None:
        """Await a bookkeeping step whose failure must not hide the outcome the user is about to see."""
        try:
            await step
        except Exception:
            log.exception("could not %s of job #%s", what, generation_id)

    # ------------------------------------------------------------------ delivery

    def _channel_upload_limit(self, guild_id: int | None) -> int:
        guild = self.bot.get_guild(guild_id) if guild_id is not None else None
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def deliver(self, record: GenerationRecord, reply: Reply | None) -> discord.Message | None:
        """Post a finished generation once; retries 5xx/429 with backoff; records the message or the failure.

        Never raises (but for cancellation): whatever goes wrong is logged with the job id, kept in the
        record as its delivery failure (so /history shows why), and told to the user while the token lives.
        """
        screening = await self.screen(record, record.guild_id, record.channel_id)
        if screening.action == "hold":
            await self._hold(record, screening, reply)
            await self._log_nsfw(record, screening, None)
            return None
        try:
            image_bytes = [await self.store.read_image(image) for image in record.images]
            message, last_error, reply = await self._post(record, reply, image_bytes,
                                                          spoiler=screening.action == "spoiler")
        except CorruptImage as error:
            reason = f"stored image unreadable: {error}"
        except Exception as error:
            log.exception("job #%s: posting the result failed unexpectedly", record.id)
            reason = f"internal error while posting: {type(error).__name__}"
        else:
            if message is not None:
                await self._quietly(self.store.record_delivery(record.id, message.channel.id, message.id),
                                    "record the delivery", record.id)
                if screening.flagged_by - {"unchecked"} or screening.action != "post":
                    await self._log_nsfw(record, screening, message)
                return message
            if isinstance(last_error, InteractionOnly):
                reason = str(last_error)
            else:
                reason = f"Discord refused the upload: {last_error}"
            log.error("job #%s: %s", record.id, reason)
        await self._quietly(self.store.record_delivery_failure(record.id, reason), "record the delivery failure",
                            record.id)
        if reply is not None and reply.usable():
            # The upload failed, a short text reply may not: tell the user where the result is.
            try:
                await reply.send_private(
                    f"⚠️ Generation #{record.id} is done but could not be posted here ({reason}). "
                    f"It is kept in your history: /show id:{record.id}")
            except discord.HTTPException:
                pass
        return None

    async def _post(self, record: GenerationRecord, reply: Reply | None, image_bytes: list[bytes], *,
                    spoiler: bool = False) -> tuple[discord.Message | None, Exception | None, Reply | None]:
        """Upload attempts: (the message, None, …) or (None, the last error, the reply still in use).

        Where the bot is not in the server (a user install) or in DMs, only the interaction can carry
        the result: there is no channel fallback.
        """
        encoded: dict[int, presentation.EncodedImage] = {}
        skipped = await asyncio.to_thread(skipped_words_of, self.service, record.model or "", record.prompt)
        warning = skipped_note(skipped, record.model or "The model")
        last_error: Exception | None = None
        for attempt in range(len(self.retry_delays_s) + 1):
            if reply is not None and not reply.usable():
                reply = None  # too old to edit: post a normal channel message instead
            if reply is None and not await self.bot_in_guild(record.guild_id):
                return None, InteractionOnly(
                    "the interaction expired and the bot cannot post in this channel (a DM or a server "
                    f"that did not add it); /show id:{record.id} posts it"), None
            limit = reply.filesize_limit if reply is not None else self._channel_upload_limit(record.guild_id)
            if limit not in encoded:
                encoded[limit] = await asyncio.to_thread(
                    presentation.encode_result, record, image_bytes, size_limit=limit)
            result = presentation.result_message(record, encoded[limit], mention_owner=reply is None, warning=warning)
            if spoiler:
                result = spoilered(result)
            fields = self._result_fields(record, result, spoiler=spoiler)
            try:
                message: discord.Message
                if reply is not None:
                    # Editing the original response is idempotent: a restart may repeat it safely.
                    message = await reply.edit(**fields, attachments=result.files())
                else:
                    message = await self._post_in_channel(record, result, fields)
            except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                last_error = error
                if reply is not None and _reply_gone(error):
                    # The token expired, or is unknown to Discord, or the status message was deleted:
                    # the channel still works.
                    log.info("job #%s: original response unusable (%s); posting in the channel", record.id, error)
                    reply = None
                    continue
                if not _retryable(error) or attempt == len(self.retry_delays_s):
                    break
                log.warning("job #%s: upload failed (%r), retrying", record.id, error)
                await asyncio.sleep(self.retry_delays_s[attempt])
                continue
            return message, None, reply
        return None, last_error, reply

    def _result_fields(self, record: GenerationRecord, result: presentation.ResultMessage, *,
                       spoiler: bool) -> dict[str, Any]:
        """content, embed and view of a result message in the layout RESULT_LAYOUT asks for."""
        settings = getattr(self.bot, "settings", None)
        if settings is not None and settings.result_layout == "gallery":
            return {"content": None, "embed": None, "view": result_layout(record, result, spoiler=spoiler)}
        return {"content": result.content, "embed": result.embed, "view": result_view(record)}

    async def _post_in_channel(self, record: GenerationRecord, result: presentation.ResultMessage,
                               fields: dict[str, Any]) -> discord.Message:
        """A channel message, at most once: the intent is recorded first, and a restart that finds it
        looks for the post in the channel before posting again; the nonce covers a retry within minutes."""
        channel = self.bot.get_partial_messageable(record.channel_id or 0, guild_id=record.guild_id)
        if record.delivery_started_at is not None:
            earlier = await self._find_earlier_post(channel, record.id)
            if earlier is not None:
                log.info("job #%s: found the result posted before a restart (message %s)", record.id, earlier.id)
                return earlier
        else:
            record = await self.store.record_delivery_started(record.id)
        return await channel.send(**fields, files=result.files(), nonce=delivery_nonce(record.id))

    async def _find_earlier_post(self, channel: discord.PartialMessageable, generation_id: int,
                                 ) -> discord.Message | None:
        bot_user = self.bot.user
        try:
            async for message in channel.history(limit=RECENT_MESSAGES):
                if bot_user is not None and message.author.id == bot_user.id and (
                        generation_id in presentation.message_generation_ids(message)):
                    return message
        except discord.HTTPException as error:
            log.info("job #%s: could not read the channel for an earlier post (%s)", generation_id, error)
        return None


class InteractionOnly(Exception):
    """Only the interaction could have carried this result, and its token is gone."""


def check_init_image(data: bytes) -> None:
    """Decode the whole picture (blocking: run it in a thread), so a damaged file never reaches the renderer."""
    try:
        with Image.open(io.BytesIO(data), formats=INIT_IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_INIT_IMAGE_PIXELS:
                raise JobProblem(
                    f"init_image is {width}×{height} = {width * height} pixels; the limit is "
                    f"{MAX_INIT_IMAGE_PIXELS} pixels (for example 4096×4096).")
            image.load()
    except JobProblem:
        raise
    except Exception:  # PIL reports damage as OSError, SyntaxError, ValueError, DecompressionBombError…
        raise JobProblem(
            "init_image is not a readable picture: the file is damaged or is not really a PNG, JPEG or WebP. "
            "Attach another one.") from None
