"""Jobs in the render queue: their states, results and progress, and snapshots of the queue."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from .request import GenerationRequest, Progress, RenderResult

log = logging.getLogger("generation.service")


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JobCancelled(Exception):
    pass


class Job:
    """One submitted request. Created by GenerationService.submit; await `result()` for the images."""

    def __init__(self, key: str, owner: str, request: GenerationRequest, loop: asyncio.AbstractEventLoop):
        self.key = key
        self.owner = owner
        self.request = request
        self.state = JobState.QUEUED
        self.error: str | None = None
        self.progress: Progress | None = None
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.sequence = 0  # submission order, set by the service
        self._listeners: list[Callable[[Progress], None]] = []
        self._cancel_requested = threading.Event()  # read by the worker thread between steps
        self._future: asyncio.Future[RenderResult] = loop.create_future()
        # A result nobody awaits (e.g. the caller went away) must not log "exception never retrieved".
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())
        log.info("job %s (owner %s): queued", key, owner)

    async def result(self) -> RenderResult:
        """The rendered images; raises JobFailed (with a readable .reason) or JobCancelled."""
        return await asyncio.shield(self._future)

    def add_progress_listener(self, callback: Callable[[Progress], None]) -> None:
        """`callback(Progress)` is called on the event loop after every denoising step."""
        self._listeners.append(callback)

    @property
    def done(self) -> bool:
        return self._future.done()

    def _set_state(self, state: JobState, detail: str = "") -> None:
        self.state = state
        log.info("job %s (owner %s): %s%s", self.key, self.owner, state.value, f" ({detail})" if detail else "")

    def _emit(self, progress: Progress) -> None:
        self.progress = progress
        for listener in list(self._listeners):
            try:
                listener(progress)
            except Exception:  # a broken listener must not break the render
                log.exception("progress listener of job %s failed", self.key)

    def _finish(self, result: RenderResult) -> None:
        self._set_state(JobState.DONE, f"{len(result.images)} image(s) in {result.duration_s:.2f}s")
        self._future.set_result(result)

    def _fail(self, reason: str) -> None:
        self.error = reason
        self._set_state(JobState.FAILED, reason)
        self._future.set_exception(JobFailed(reason))

    def _cancelled(self) -> None:
        self._set_state(JobState.CANCELLED)
        self._future.set_exception(JobCancelled(f"job {self.key} was cancelled"))


@dataclass(frozen=True)
class QueueEntry:
    key: str
    owner: str
    position: int  # 0 = rendering now, 1 = next, ...
    eta_s: float  # estimated seconds until this job is done
    state: JobState


@dataclass(frozen=True)
class QueueSnapshot:
    entries: list[QueueEntry] = field(default_factory=list)
    avg_render_s: float = 0.0  # moving average over recent renders
    total: int = 0

    def for_owner(self, owner: str) -> list[QueueEntry]:
        return [entry for entry in self.entries if entry.owner == owner]

    def entry(self, key: str) -> QueueEntry | None:
        return next((entry for entry in self.entries if entry.key == key), None)
