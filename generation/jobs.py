"""Jobs in the render queue: their states, results and progress, and snapshots of the queue."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from collections.abc import Hashable
from typing import Awaitable, Callable

from .request import BatchPlace, GenerationRequest, Progress, RenderResult

log = logging.getLogger("generation.queue")


class JobFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JobCancelled(Exception):
    pass


class Job:
    """One submitted request. Created by GenerationService.submit; await `result()` for the images."""

    def __init__(self, key: str, owner: str, request: GenerationRequest, loop: asyncio.AbstractEventLoop,
                 before_start: Callable[[], Awaitable[None]] | None = None):
        self.key = key
        self.owner = owner
        self.request = request
        # Awaited when the worker takes the job, before the model loads (the bot records the attempt).
        self.before_start = before_start
        self.error: str | None = None  # why it failed
        self.cancelled = False
        self.started_at: float | None = None  # loop time when the worker took it
        self.progress: Progress | None = None  # the latest step reported (the running batch's ETA reads it)
        self.sequence = 0  # submission order, set by the service
        # Set by the service: what a pipeline call needs equal to share it (None: renders in a call of its
        # own), and for a re-render the place its image had in the recorded call.
        self.batch_key: Hashable | None = None
        self.place: BatchPlace | None = None
        self._listeners: list[Callable[[Progress], None]] = []
        self._cancel_requested = threading.Event()  # read by the worker thread between steps
        self._future: asyncio.Future[RenderResult] = loop.create_future()
        # A result nobody awaits (e.g. the caller went away) must not log "exception never retrieved".
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._log("queued")

    async def result(self) -> RenderResult:
        """The rendered images; raises JobFailed (with a readable .reason) or JobCancelled."""
        return await asyncio.shield(self._future)

    def add_progress_listener(self, callback: Callable[[Progress], None]) -> None:
        """`callback(Progress)` is called on the event loop after every denoising step."""
        self._listeners.append(callback)

    @property
    def done(self) -> bool:
        return self._future.done()

    @property
    def succeeded(self) -> bool:
        return self.done and self.error is None and not self.cancelled

    def _log(self, what: str, detail: str = "") -> None:
        # One line per change: queued, running, done, failed, cancelled.
        log.info("job %s (owner %s): %s%s", self.key, self.owner, what, f" ({detail})" if detail else "")

    def _started(self, now: float) -> None:
        self.started_at = now
        self._log("running")

    def _emit(self, progress: Progress) -> None:
        self.progress = progress
        for listener in list(self._listeners):
            try:
                listener(progress)
            except Exception:  # a broken listener must not break the render
                log.exception("progress listener of job %s failed", self.key)

    def _finish(self, result: RenderResult) -> None:
        self._log("done", f"{len(result.images)} image(s) in {result.duration_s:.2f}s")
        self._future.set_result(result)

    def _fail(self, reason: str) -> None:
        self.error = reason
        self._log("failed", reason)
        self._future.set_exception(JobFailed(reason))

    def _cancelled(self) -> None:
        self.cancelled = True
        self._log("cancelled")
        self._future.set_exception(JobCancelled(f"job {self.key} was cancelled"))


@dataclass(frozen=True)
class QueueEntry:
    key: str
    owner: str
    position: int  # 0 = in the batch rendering now, 1 = in the next batch, ...
    eta_s: float  # estimated seconds until this job is done
    batch_jobs: int = 1  # jobs in its batch, itself included (they share the position and the ETA)


@dataclass(frozen=True)
class QueueSnapshot:
    entries: list[QueueEntry] = field(default_factory=list)
    avg_render_s: float = 0.0  # moving average over recent renders

    def for_owner(self, owner: str) -> list[QueueEntry]:
        return [entry for entry in self.entries if entry.owner == owner]

    def entry(self, key: str) -> QueueEntry | None:
        return next((entry for entry in self.entries if entry.key == key), None)
