"""From a recorded job to a posted result: init image, queue, status line, delivery, retries.

One JobRunner per bot. `Intake.submit` records a job and calls `start`; recovery calls `resume` and
`deliver_recovered`. Everything here runs in background tasks, so interaction handlers return at once.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from PIL import Image

from bot import presentation
from bot.delivery import RETRY_DELAYS_S, Delivery
from bot.errors import apology
from bot.instruction_edits import picture_render_size
from bot.moderation import Moderation, quietly
from bot.reference_downloads import ReferenceProblem, attach_references
from bot.reply import Reply
from bot.status import STATUS_EDIT_INTERVAL_S, StatusMessage, StatusWatcher
from generation import GenerationRequest, JobCancelled, JobFailed, RequestError
from generation.editing import blend_strip_png
from generation.queue.records import request_from_record
from generation.queue.tasks import BackgroundTasks
from generation.telemetry import Outcome, events
from storage import CorruptImage, GenerationKind, GenerationStatus, ImageInput

if TYPE_CHECKING:
    from bot.policy import Screening
    from bot.services import Services
    from generation import Reservation
    from storage import GenerationRecord

log = logging.getLogger(__name__)

# Decoding is checked in full before rendering; this bounds the memory that takes (a phone photo fits).
MAX_INIT_IMAGE_PIXELS = 4096 * 4096
INIT_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


class JobProblem(Exception):
    """A job cannot go on for a reason the user can act on; `str()` is shown to them privately."""


class JobRunner:
    """Runs recorded generations for the bot: render (or copy), follow progress, store, post."""

    def __init__(self, bot: discord.Client, services: Services, *,
                 retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
                 status_clock: Callable[[], float] | None = None) -> None:
        self.bot = bot
        self.services = services
        self.store = services.store
        self.queue = services.queue
        self.settings = services.settings
        self.moderation = Moderation(bot, services)
        self.delivery = Delivery(bot, services, self.moderation, retry_delays_s=retry_delays_s)
        # What status-edit throttling measures time with (None = the event loop's clock), and how often.
        self.status_clock = status_clock
        self.status_interval_s = STATUS_EDIT_INTERVAL_S
        self._tasks = BackgroundTasks("job runner")
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
            references = await self.store.read_references(record.id) if record.sref_path or record.oref_path else {}
            request = self.queue.prepare(request_from_record(record, init_image, references))
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
        await self.delivery.deliver(record, Reply.from_record(self.bot, record))

    async def screen(self, record: GenerationRecord, guild_id: int | None, channel_id: int | None) -> Screening:
        """What the content policy says about posting `record` in that channel (/show asks too)."""
        return await self.moderation.screen(record, guild_id, channel_id)

    async def report_recovered_failure(self, record: GenerationRecord) -> None:
        """A job that failed during recovery (it stopped the renderer too often): tell its owner."""
        reason = record.failure_reason or "it was interrupted"
        await self._show_failure(record, request_from_record(record), reason, Reply.from_record(self.bot, record))
        await quietly(self.store.clear_interaction(record.id), "forget the interaction", record.id)

    # ------------------------------------------------------------------ background work

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run `coroutine` in the background; kept until done, closed with the runner, failures logged."""
        return self._tasks.spawn(coroutine, name=name)

    async def close(self) -> None:
        await self._tasks.close()

    async def _run(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
                   reply: Reply | None, attachment: discord.Attachment | None, *,
                   attachment_url: str | None = None) -> None:
        status = StatusMessage(reply, self.spawn, self.status_clock, self.status_interval_s)
        try:
            # /blend's side-by-side strip (with words on a multi-picture model it is an instruction edit instead)
            if request.edit_mode == "blend" and (attachment is not None or attachment_url is not None):
                init_image = await self._download_blend(record, request)
                await self.store.attach_init_image(record.id, init_image)
                request = request.replace(init_image=init_image)
            elif attachment is not None or attachment_url is not None:
                init_image = await self._download_init_image(attachment, attachment_url)
                size = None
                if request.edit_mode == "instruction":  # an instruction edit keeps the picture's size
                    size = picture_render_size(init_image, self.queue.size_multiple(request.model), self.queue.limits)
                    request = request.replace(width=size[0], height=size[1])
                await self.store.attach_init_image(record.id, init_image, size=size)
                request = request.replace(init_image=init_image)
            request = await attach_references(self.bot, self.store, record, request)  # --sref/--oref URLs
            if record.kind is GenerationKind.PICK:
                done = await self._copy_picked_image(record)
            else:
                done = await self._render(record, request, reservation, status)
        except (JobProblem, ReferenceProblem) as problem:
            events.job_finished(self.services.metrics, record, Outcome.FAILED, reason=str(problem))
            await self._fail(record, request, str(problem), status)
            return
        except JobCancelled:
            events.job_finished(self.services.metrics, record, Outcome.CANCELLED)
            await quietly(self.store.mark_cancelled(record.id), "record the cancellation", record.id)
            await status.finish(content=f"{presentation.status_header(request)}\n✖ Cancelled.", view=None)
            return
        except JobFailed as error:
            events.job_finished(self.services.metrics, record, Outcome.FAILED, reason=error.reason)
            await self._fail(record, request, error.reason, status)
            return
        except Exception as error:
            log.exception("job #%s failed unexpectedly", record.id)
            events.job_finished(self.services.metrics, record, Outcome.FAILED, reason="internal error")
            await quietly(self.store.mark_failed(record.id, f"internal error: {type(error).__name__}"),
                                "record the failure", record.id)
            await status.finish(content=apology(record.id), view=None)
            return
        finally:
            if reservation is not None:
                reservation.release()  # a no-op once submit() used it
            if self._waiting.pop(str(record.id), None) is not None:  # left the queue without starting
                self._refresh_positions()
        await status.finish()
        events.job_finished(self.services.metrics, record, Outcome.DONE)
        await self.delivery.deliver(done, reply)

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
        blur = await self.moderation.blur_previews(record.guild_id, record.channel_id, request.model)
        watcher = StatusWatcher(record, request, status, self._waiting, self._refresh_positions, blur)
        return await self.queue.render(record, request, reservation, watcher,
                                       classify=not self.moderation.age_restricted(record.channel_id))

    def _refresh_positions(self) -> None:
        """The queue moved (a job started or left it): each waiting job's line shows its new place."""
        snapshot = self.queue.snapshot()
        for key, (status, request) in list(self._waiting.items()):
            entry = snapshot.entry(key)
            if entry is not None and entry.position > 0:
                status.offer(f"queued {entry.position} of {entry.batch_jobs}",
                             content=presentation.queued_status(request, entry))

    async def _fail(self, record: GenerationRecord, request: GenerationRequest, reason: str,
                    status: StatusMessage) -> None:
        current = await self.store.get(record.id, include_deleted=True)
        if current is None or current.status is not GenerationStatus.FAILED:  # a worker may have recorded it
            await quietly(self.store.mark_failed(record.id, reason), "record the failure", record.id)
        await status.finish()
        await self._show_failure(record, request, reason, status.reply)

    async def _show_failure(self, record: GenerationRecord, request: GenerationRequest, reason: str,
                            reply: Reply | None) -> None:
        """The public line says only that the job failed; the reason goes privately to its owner."""
        await self.moderation.tell_owner(record, reply, f"{presentation.status_header(request)}\n⚠️ Job #{record.id} failed.",
                               private=f"⚠️ Job #{record.id} failed: {reason}",
                               in_channel=f"⚠️ Job #{record.id} failed: {reason}")

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


