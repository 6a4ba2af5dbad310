"""The shared queue's gateway side (SHARED_QUEUE=true, PostgreSQL): render workers anywhere, the bot follows.

The bot records jobs as always; instead of rendering them it NOTIFYs `imagine_work` and follows each
job's row until it is final. Render workers (`generation.queue.worker.RenderWorker`) claim jobs in fair
order (storage.claims), render and finish them under their lease. Progress and cancellations travel by
LISTEN/NOTIFY (storage.signals); every wait also looks at the database every QUEUE_POLL_S, so a lost
notification only delays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage import GenerationStatus, InvalidTransition, signals
from storage.repository import FINAL

from ..jobs import JobCancelled, JobFailed, QueueEntry, QueueSnapshot
from ..request import Progress
from .admission import Admission
from .eta import DEFAULT_SECONDS_PER_STEP, RunningPace, never_decreasing
from .listening import start_listening
from .waiter import PLAIN, Waiter

if TYPE_CHECKING:
    from storage import GenerationRecord, Store
    from storage.claims import QueuedJob, WorkerRecord

    from ..request import GenerationRequest, Limits
    from ..telemetry import Metrics
    from .admission import Reservation
    from .requests import RequestChecker
    from .interface import JobWatcher

log = logging.getLogger(__name__)


@dataclass
class Follower:
    """A job the gateway waits on: woken by notifications (and the periodic look at the database)."""

    generation_id: int
    owner: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    on_progress: Callable[[int, int], None] | None = None


class SharedQueue:
    """RenderQueue on PostgreSQL. It renders nothing itself: `requests` validates requests and fills in
    their defaults, as the workers' would."""

    def __init__(self, requests: RequestChecker, store: Store, *, per_owner_cap: int, total_cap: int,
                 poll_s: float, max_attempts: int, waiter: Waiter = PLAIN, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not store.shared:
            raise RuntimeError("SHARED_QUEUE=true needs PostgreSQL: set DATABASE_URL=postgresql+asyncpg://...")
        self.requests = requests
        self.store = store
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.waiter = waiter
        self.metrics = metrics
        self.admission = Admission(per_owner_cap, total_cap, owned=self._owned,
                                   total=lambda: len(self.followers))
        self.followers: dict[int, Follower] = {}
        self.shared_entries: list[QueuedJob] = []
        self.shared_workers: list[WorkerRecord] = []
        self.clock = clock
        # Rendering jobs' progress as heard from the workers (any gateway's jobs): their ETAs come from it.
        self.paces: dict[int, RunningPace] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: signals.Listener | None = None
        self._background: list[asyncio.Task[None]] = []

    @property
    def limits(self) -> Limits:
        return self.requests.limits

    @property
    def per_owner_cap(self) -> int:
        return self.admission.per_owner_cap

    async def start(self) -> None:
        self._listener = signals.Listener(self.store.engine.url.render_as_string(hide_password=False),
                                          [signals.PROGRESS, signals.DONE, signals.WORK], self._on_signal,
                                          on_reconnect=self._wake_all)
        self._background.append(await start_listening(self._listener, self.waiter))
        await self.refresh()
        if self.poll_s > 0:
            self._background.append(asyncio.get_running_loop().create_task(self._tick(), name="shared-queue ticker"))

    async def close(self) -> None:
        for task in [*self._background, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._background, *self._tasks, return_exceptions=True)
        self._background.clear()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    # -- requests --

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return self.requests.prepare(request)

    def model_defaults(self, model: str) -> dict[str, Any]:
        return self.requests.model_defaults(model)

    def native_size(self, model: str) -> int:
        return self.requests.native_size(model)

    def size_multiple(self, model: str) -> int:
        return self.requests.size_multiple(model)

    def picture_limits(self, model: str) -> Limits:
        return self.requests.picture_limits(model)

    def lora_names(self) -> list[str]:
        return self.requests.lora_names()

    def instruction_pictures(self, model: str) -> int:
        return self.requests.instruction_pictures(model)

    def model_label(self, model: str) -> str:
        return self.requests.model_label(model)

    def skipped_words(self, model: str, prompt: str) -> list[str]:
        return self.requests.skipped_words(model, prompt)

    def reserve(self, owner: str, cap: int | None = None) -> Reservation:
        return self.admission.reserve(owner, cap)

    def _owned(self, owner: str) -> int:
        return sum(1 for follower in self.followers.values() if follower.owner == owner)

    # -- jobs --

    async def render(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
                     watcher: JobWatcher, *, classify: bool) -> GenerationRecord:
        """Wait for a worker to render the job: its row becomes final. (`classify` is the workers' to
        decide: they cannot see Discord channels, so they classify every result.)"""
        follower = Follower(record.id, str(record.owner_id))
        self.followers[record.id] = follower
        try:
            if reservation is not None:
                reservation.consume()  # the follower holds the room now
            await self.store.notify(signals.WORK, request.model)
            await self.refresh()
            await watcher.queued(self.snapshot().entry(str(record.id)))
            follower.on_progress = lambda step, total: watcher.progress(Progress(step, total))
            while True:
                follower.event.clear()
                current = await self.store.get(record.id, include_deleted=True)
                if current is None or current.status in FINAL:
                    break
                await self.waiter.idle(follower.event.wait())
        finally:
            self.followers.pop(record.id, None)
        if current is None or current.status is GenerationStatus.CANCELLED:
            raise JobCancelled()
        if current.status is GenerationStatus.FAILED:
            raise JobFailed(current.failure_reason or "rendering failed")
        return current

    def cancel(self, key: str) -> bool:
        """Cancel a followed job: its row becomes cancelled now, the worker rendering it stops at its next
        step (NOTIFY imagine_cancel; its lease renewal would also fail)."""
        if not key.isdigit() or int(key) not in self.followers:
            return False
        self._spawn(self._cancel(int(key)))
        return True

    async def _cancel(self, generation_id: int) -> None:
        try:
            await self.store.cancel_and_notify(generation_id, signals.CANCEL)
        except InvalidTransition as error:
            log.info("job #%s: not cancelled (%s)", generation_id, error)
            return
        follower = self.followers.get(generation_id)
        if follower is not None:
            follower.event.set()

    def prompt(self, key: str) -> str | None:
        return None  # the rows are the workers'; /queue shows positions and ETAs

    # -- notifications and the periodic look --

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake_all(self) -> None:
        for follower in self.followers.values():
            follower.event.set()

    def _on_signal(self, channel: str, payload: str) -> None:
        parts = payload.split()
        if channel == signals.PROGRESS and len(parts) == 3:
            self._heard_progress(int(parts[0]), int(parts[1]), int(parts[2]))
            follower = self.followers.get(int(parts[0]))
            if follower is not None and follower.on_progress is not None:
                follower.on_progress(int(parts[1]), int(parts[2]))
        elif channel == signals.DONE and parts:
            follower = self.followers.get(int(parts[0]))
            if follower is not None:
                follower.event.set()
            self._spawn(self.refresh())
        elif channel == signals.WORK:
            self._spawn(self.refresh())

    def _heard_progress(self, generation_id: int, step: int, total: int) -> None:
        pace = self.paces.get(generation_id)
        if pace is None or step < pace.step:  # a new attempt starts over
            self.paces[generation_id] = RunningPace(step, total, self.clock())
        else:
            pace.heard(step, total)

    async def _tick(self) -> None:
        """Every QUEUE_POLL_S: take back jobs of workers that stopped heartbeating, refresh /queue, and let
        every follower look at its row (a lost notification only delays)."""
        while True:
            await self.waiter.idle(asyncio.sleep(self.poll_s))
            try:
                requeued, failed = await self.store.expire_leases(self.max_attempts)
                if self.metrics is not None:
                    for requeued_again in [True] * len(requeued) + [False] * len(failed):
                        self.metrics.lease_expired(requeued_again)
                if requeued:
                    await self.store.notify(signals.WORK, "")
                await self.refresh()
            except Exception:
                log.exception("shared queue: periodic look at the database failed")
                if self.metrics is not None:
                    self.metrics.database_error("expire_leases")
            self._wake_all()

    async def refresh(self) -> None:
        self.shared_entries = await self.store.shared_queue()
        self.shared_workers = await self.store.workers()
        rendering = {job.id for job in self.shared_entries if job.status is GenerationStatus.RUNNING}
        self.paces = {key: pace for key, pace in self.paces.items() if key in rendering}
        if self.metrics is not None:
            running = sum(1 for job in self.shared_entries if job.status is GenerationStatus.RUNNING)
            self.metrics.set_queue(len(self.shared_entries) - running, running)

    # -- /queue --

    def live_workers(self) -> list[WorkerRecord]:
        return [worker for worker in self.shared_workers if worker.stopped_at is None]

    def seconds_per_image(self) -> float:
        images = sum(worker.images_done for worker in self.shared_workers)
        seconds = sum(worker.render_s for worker in self.shared_workers)
        return seconds / images if images else DEFAULT_SECONDS_PER_STEP * 20

    def snapshot(self) -> QueueSnapshot:
        """Every worker's queue: rendering jobs at position 0; queued ones in claim order, as many per
        position as there are live workers; ETAs from the workers' measured seconds per image, and a
        rendering job's from the pace of its steps so far."""
        per_image = self.seconds_per_image()
        workers = max(len(self.live_workers()), 1)
        entries: list[QueueEntry] = []
        ahead = 0.0
        waiting = 0
        now = self.clock()
        for job in self.shared_entries:
            work = job.images * per_image
            if job.status is GenerationStatus.RUNNING and job.id in self.paces:
                work = self.paces[job.id].seconds_left(work, now)
            ahead += work
            if job.status is GenerationStatus.RUNNING:
                entries.append(QueueEntry(str(job.id), str(job.owner_id), 0, round(work, 1)))
                continue
            entries.append(QueueEntry(str(job.id), str(job.owner_id), waiting // workers + 1,
                                      round(ahead / workers, 1)))
            waiting += 1
        return QueueSnapshot(never_decreasing(entries), round(per_image, 3))
