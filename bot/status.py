"""A job's status line: the reply's thinking message, edited as the job moves (queued, its place, rendering
with progress and previews) until the result replaces it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot import presentation
from bot.views import status_view

if TYPE_CHECKING:
    from bot.reply import Reply
    from generation import GenerationRequest, Progress, QueueEntry
    from storage import GenerationRecord

log = logging.getLogger(__name__)

# At most one status edit per this many seconds (Discord rate-limits webhook edits to ~5 per 5 s).
STATUS_EDIT_INTERVAL_S = 1.0


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


class StatusWatcher:
    """A job's status line, following the render queue: queued (and its place), rendering, progress."""

    def __init__(self, record: GenerationRecord, request: GenerationRequest, status: StatusMessage,
                 waiting: dict[str, tuple[StatusMessage, GenerationRequest]], queue_moved: Callable[[], None],
                 blur_previews: bool = False) -> None:
        self.blur_previews = blur_previews  # the content policy would screen the result (Moderation.blur_previews)
        self.waiting = waiting  # status lines of jobs still in the queue, kept up to date as it moves
        self.queue_moved = queue_moved
        self.record = record
        self.request = request
        self.status = status
        self.key = str(record.id)
        self._unsent_preview: list[Progress] = []  # the newest preview not shown yet (edits may be dropped)
        # Progress arrives through call_soon_threadsafe from the render thread, i.e. in that thread's
        # context; the work it starts belongs in this task's context (context variables of the client).
        self._context = contextvars.copy_context()

    async def queued(self, entry: QueueEntry | None) -> None:
        await self.status.show(content=presentation.queued_status(self.request, entry),
                               view=status_view(self.record.id))
        self.waiting[self.key] = (self.status, self.request)

    def started(self) -> None:
        self.waiting.pop(self.key, None)
        self.queue_moved()

    def progress(self, progress: Progress) -> None:
        try:
            self._context.run(self._show_progress, progress)
        except Exception:
            # Raised here it would reach only the event loop's handler, without the job id.
            log.exception("job #%s: showing progress failed", self.record.id)

    def _show_progress(self, progress: Progress) -> None:
        if progress.preview is not None:
            self._unsent_preview[:] = [progress]
        fields: dict[str, Any] = {"content": presentation.rendering_status(self.request, progress, self.blur_previews)}
        if self._unsent_preview:
            fields["attachments"] = [presentation.preview_file(self._unsent_preview[0], self.blur_previews)]
        if self.status.offer("rendering", **fields) and self._unsent_preview:
            self._unsent_preview.clear()
