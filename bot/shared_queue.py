"""The shared queue (SHARED_QUEUE=true, PostgreSQL): render workers on any machine, the gateway follows.

The gateway (`python -m bot`) records jobs as always; instead of rendering them it NOTIFYs `imagine_work`
and follows each job's row until it is final, then posts it (`SharedJobRunner`). Render workers
(`python -m bot.worker`, or one inside the gateway with LOCAL_WORKER=true) claim jobs from the database in
fair order (storage.claims), render them with their own GenerationService, store the images and mark
the job done under their lease (`RenderWorker`). Progress and cancellations travel by LISTEN/NOTIFY
(storage.signals); every wait also looks at the database every QUEUE_POLL_S, so a lost notification
only delays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot import presentation
from bot.record_requests import request_from_record
from bot.runner import JobRunner
from bot.views import status_view
from generation import GenerationRequest, GenerationService, JobCancelled, JobFailed, RequestError
from generation.jobs import QueueEntry, QueueSnapshot
from generation.request import Progress, QueueFull
from generation.service import DEFAULT_SECONDS_PER_STEP, IdleWait
from storage import CorruptImage, GenerationStatus, ImageInput, InvalidTransition, signals
from storage.claims import QueuedJob, WorkerRecord
from storage.repository import FINAL, LeaseLost

if TYPE_CHECKING:
    from bot.app import ImagineBot
    from bot.settings import Settings
    from generation import Job, Reservation
    from storage import GenerationRecord, Store
    from bot.runner import StatusMessage

log = logging.getLogger(__name__)

# At most one progress NOTIFY per job per this many seconds (the gateway edits at most once a second anyway).
PROGRESS_INTERVAL_S = 0.25


def _identity(awaitable: Awaitable[Any]) -> Awaitable[Any]:
    return awaitable


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


# ----------------------------------------------------------------------------------- render worker


class RenderWorker:
    """Claims jobs from the shared queue, renders them on `service`, stores the images, heartbeats."""

    def __init__(self, store: Store, service: GenerationService, settings: Settings, *,
                 worker_id: str | None = None, idle_wait: IdleWait | None = None) -> None:
        self.store = store
        self.service = service
        self.settings = settings
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self.lease_s = settings.lease_s
        self.poll_s = settings.queue_poll_s
        self.jobs = max(settings.worker_jobs, 1)
        self.models = list(settings.model_names)
        self.max_size = settings.max_size
        self.loaded_model: str | None = None
        self.idle_wait = idle_wait or _identity
        self.inflight: dict[int, Job | None] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: signals.Listener | None = None
        self._done = (0, 0, 0.0)  # jobs, images, render seconds since the last heartbeat

    async def start(self) -> None:
        await self.store.register_worker(self.worker_id, host=socket.gethostname(), models=self.models,
                                         max_size=self.max_size)
        self._listener = signals.Listener(str(self.store.engine.url.render_as_string(hide_password=False)),
                                          [signals.WORK, signals.CANCEL], self._on_signal,
                                          on_reconnect=self._wake.set, idle_wait=self.idle_wait)
        await self._listener.start()
        self._spawn(self._claim_loop(), "claims")
        self._spawn(self._heartbeat_loop(), "heartbeats")
        log.info("worker %s: rendering %s (sides up to %d), lease %.1fs", self.worker_id, ", ".join(self.models),
                 self.max_size, self.lease_s)

    async def close(self) -> None:
        """Stop claiming; jobs in flight are cancelled (their leases expire, so other workers take them)."""
        if self._listener is not None:
            await self._listener.close()
        for job in self.inflight.values():
            if job is not None:
                self.service.cancel(job.key)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.store.worker_heartbeat(self.worker_id, loaded_model=self.loaded_model, current_jobs=[],
                                              stopped=True)
        except Exception:
            log.info("worker %s: could not record the stop", self.worker_id, exc_info=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=f"worker {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker task %r failed", task.get_name(), exc_info=task.exception())

    def _on_signal(self, channel: str, payload: str) -> None:
        if channel == signals.WORK:
            self._wake.set()
        elif channel == signals.CANCEL:
            job = self.inflight.get(int(payload))
            if job is not None and self.service.cancel(job.key):
                log.info("worker %s: job #%s cancelled by the gateway", self.worker_id, payload)

    async def _claim_loop(self) -> None:
        while True:
            self._wake.clear()
            room = self.jobs - len(self.inflight)
            claimed: list[GenerationRecord] = []
            if room > 0:
                try:
                    claimed, failed = await self.store.claim(
                        self.worker_id, models=self.models, max_size=self.max_size, loaded_model=self.loaded_model,
                        lease_s=self.lease_s, limit=room, max_attempts=self.settings.max_render_attempts)
                except Exception:
                    log.exception("worker %s: claiming failed; trying again", self.worker_id)
                    claimed, failed = [], []
                for record in failed:
                    await self._notify(signals.DONE, f"{record.id} {record.status.value}")
                for record in claimed:
                    self.inflight[record.id] = None
                    self._spawn(self._render(record), f"job #{record.id}")
            if claimed:
                continue
            try:
                await asyncio.wait_for(self.idle_wait(self._wake.wait()), self.poll_s)
            except TimeoutError:
                pass

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.idle_wait(asyncio.sleep(self.lease_s / 3))
            try:
                ids = list(self.inflight)
                held = await self.store.renew_leases(self.worker_id, ids, self.lease_s)
                for lost in set(ids) - held:
                    job = self.inflight.get(lost)
                    if job is not None and self.service.cancel(job.key):
                        log.warning("worker %s: lost the lease of job #%s; stopped it", self.worker_id, lost)
                jobs, images, seconds = self._done
                self._done = (0, 0, 0.0)
                await self.store.worker_heartbeat(self.worker_id, loaded_model=self.loaded_model,
                                                  current_jobs=sorted(self.inflight), jobs_done=jobs,
                                                  images_done=images, render_s=seconds)
            except Exception:
                log.exception("worker %s: heartbeat failed", self.worker_id)

    async def _notify(self, channel: str, payload: str) -> None:
        try:
            await self.store.notify(channel, payload)
        except Exception:
            log.info("NOTIFY %s %s failed", channel, payload, exc_info=True)

    async def _render(self, record: GenerationRecord) -> None:
        generation_id = record.id
        try:
            init_image = await self.store.read_init_image(generation_id) if record.has_init_image else None
            request = self.service.prepare(request_from_record(record, init_image))
            job = self.service.submit(request, owner=str(record.owner_id), key=str(generation_id),
                                      enforce_caps=False)
            self.inflight[generation_id] = job
            self.loaded_model = request.model
            self._follow(job, generation_id)
            result = await job.result()
            pngs = await asyncio.to_thread(lambda: [self.service.png(result.request, image) for image in result.images])
            images = [ImageInput(index=index, png=png, seed=image.seed, variation_seed=image.variation_seed,
                                 variation_strength=image.variation_strength,
                                 nsfw="safety_checker" if getattr(image, "nsfw", False) else None,
                                 batch_size=image.place.size, batch_index=image.place.index)
                      for index, (image, png) in enumerate(zip(result.images, pngs))]
            await self.store.mark_done(generation_id, images, result.duration_s, worker_id=self.worker_id)
            jobs, count, seconds = self._done
            self._done = (jobs + 1, count + len(images), seconds + result.duration_s)
            await self._notify(signals.DONE, f"{generation_id} done")
        except JobCancelled:
            log.info("worker %s: job #%s stopped (cancelled, or its lease was lost)", self.worker_id, generation_id)
        except LeaseLost as lost:
            log.warning("worker %s: job #%s finished after its lease went to %s; result dropped", self.worker_id,
                        generation_id, lost.holder)
        except (JobFailed, RequestError, CorruptImage) as error:
            reason = error.reason if isinstance(error, JobFailed) else str(error)
            await self._finish_failed(generation_id, reason)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("worker %s: job #%s failed unexpectedly", self.worker_id, generation_id)
            await self._finish_failed(generation_id, f"internal error: {type(error).__name__}")
        finally:
            self.inflight.pop(generation_id, None)
            self._wake.set()

    async def _finish_failed(self, generation_id: int, reason: str) -> None:
        try:
            await self.store.mark_failed(generation_id, reason, worker_id=self.worker_id)
        except InvalidTransition:
            log.info("worker %s: job #%s is no longer ours to fail", self.worker_id, generation_id)
            return
        await self._notify(signals.DONE, f"{generation_id} failed")

    def _follow(self, job: Job, generation_id: int) -> None:
        last = [float("-inf")]

        def on_progress(progress: Progress) -> None:
            now = time.monotonic()
            if progress.step < progress.total and now - last[0] < PROGRESS_INTERVAL_S:
                return
            last[0] = now
            self._spawn(self._notify(signals.PROGRESS, f"{generation_id} {progress.step} {progress.total}"),
                        f"progress #{generation_id}")

        job.add_progress_listener(on_progress)


# ----------------------------------------------------------------------------------- gateway side


@dataclass
class Follower:
    """A job the gateway waits on: woken by notifications (and the periodic look at the database)."""

    generation_id: int
    owner: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    on_progress: Callable[[int, int], None] | None = None


class SharedQueueService(GenerationService):
    """The gateway's view of the shared queue, in the GenerationService's shape (validation, caps, /queue,
    cancel), so commands, buttons and /queue work unchanged. It renders nothing itself."""

    store: Store
    poll_s: float

    @classmethod
    def around(cls, base: GenerationService, store: Store, poll_s: float) -> SharedQueueService:
        service = cls(base.renderer, base.limits, per_owner_cap=base.per_owner_cap, total_cap=base.total_cap,
                      idle_wait=base._idle_wait)
        service.store = store
        service.poll_s = poll_s
        service.followers = {}
        service.shared_entries = []
        service.shared_workers = []
        service._signal_tasks = set()
        service._listener = None
        service._ticker = None
        return service

    followers: dict[int, Follower]
    shared_entries: list[QueuedJob]
    shared_workers: list[WorkerRecord]
    _signal_tasks: set[asyncio.Task[Any]]
    _listener: signals.Listener | None
    _ticker: asyncio.Task[None] | None

    async def start(self) -> None:
        await super().start()
        self._listener = signals.Listener(self.store.engine.url.render_as_string(hide_password=False),
                                          [signals.PROGRESS, signals.DONE, signals.WORK], self._on_signal,
                                          on_reconnect=self._wake_all, idle_wait=self._idle_wait)
        await self._listener.start()
        await self.refresh()
        if self.poll_s > 0:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="shared-queue ticker")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        for task in list(self._signal_tasks):
            task.cancel()
        await asyncio.gather(*self._signal_tasks, return_exceptions=True)
        await super().close()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    def _wake_all(self) -> None:
        for follower in self.followers.values():
            follower.event.set()

    def _on_signal(self, channel: str, payload: str) -> None:
        parts = payload.split()
        if channel == signals.PROGRESS and len(parts) == 3:
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

    async def _tick(self) -> None:
        """Every QUEUE_POLL_S: take back jobs of workers that stopped heartbeating, refresh /queue, and let
        every follower look at its row (a lost notification only delays)."""
        while True:
            await self._idle_wait(asyncio.sleep(self.poll_s))
            try:
                requeued, failed = await self.store.expire_leases(self.max_attempts)
                if requeued:
                    await self.store.notify(signals.WORK, "")
                await self.refresh()
            except Exception:
                log.exception("shared queue: periodic look at the database failed")
            self._wake_all()

    async def refresh(self) -> None:
        self.shared_entries = await self.store.shared_queue()
        self.shared_workers = await self.store.workers()

    def follow(self, record: GenerationRecord) -> Follower:
        follower = Follower(record.id, str(record.owner_id))
        self.followers[record.id] = follower
        return follower

    def unfollow(self, generation_id: int) -> None:
        self.followers.pop(generation_id, None)

    # -- GenerationService's shape --

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

    def _check_room(self, owner: str, cap: int | None = None) -> None:
        owned = sum(1 for follower in self.followers.values() if follower.owner == owner) + self._reserved.get(owner, 0)
        limit = self.per_owner_cap if cap is None else min(cap, self.per_owner_cap)
        if owned >= limit:
            raise QueueFull(f"You already have {owned} renders queued or running (the limit is {limit}); "
                            "try again when one is done.")
        if len(self.followers) + sum(self._reserved.values()) >= self.total_cap:
            raise QueueFull(f"The render queue is full ({self.total_cap} jobs); try again in a moment.")

    def live_workers(self) -> list[WorkerRecord]:
        return [worker for worker in self.shared_workers if worker.stopped_at is None]

    def seconds_per_image(self) -> float:
        images = sum(worker.images_done for worker in self.shared_workers)
        seconds = sum(worker.render_s for worker in self.shared_workers)
        return seconds / images if images else DEFAULT_SECONDS_PER_STEP * 20

    def snapshot(self) -> QueueSnapshot:
        """Every worker's queue: rendering jobs at position 0; queued ones in claim order, as many per
        position as there are live workers; ETAs from the workers' measured seconds per image."""
        per_image = self.seconds_per_image()
        workers = max(len(self.live_workers()), 1)
        entries: list[QueueEntry] = []
        ahead = 0.0
        waiting = 0
        for job in self.shared_entries:
            work = job.images * per_image
            if job.status is GenerationStatus.RUNNING:
                entries.append(QueueEntry(str(job.id), str(job.owner_id), 0, round(work, 1)))
                ahead += work
                continue
            ahead += work
            entries.append(QueueEntry(str(job.id), str(job.owner_id), waiting // workers + 1,
                                      round(ahead / workers, 1)))
            waiting += 1
        return QueueSnapshot(entries, round(per_image, 3))


class SharedJobRunner(JobRunner):
    """The gateway's runner with the shared queue: a job's render is waiting for its row to be final."""

    service: SharedQueueService

    async def _render(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
                      status: StatusMessage) -> GenerationRecord:
        follower = self.service.follow(record)
        try:
            if reservation is not None:
                reservation.consume()  # the follower holds the room now
            await self.store.notify(signals.WORK, request.model)
            await self.service.refresh()
            entry = self.service.snapshot().entry(str(record.id))
            await status.show(content=presentation.queued_status(request, entry), view=status_view(record.id))

            def on_progress(step: int, total: int) -> None:
                status.offer("rendering", content=presentation.rendering_status(request, Progress(step, total)))

            follower.on_progress = on_progress
            while True:
                follower.event.clear()
                current = await self.store.get(record.id, include_deleted=True)
                if current is None or current.status in FINAL:
                    break
                await self.queue_wait(follower.event.wait())
        finally:
            self.service.unfollow(record.id)
        if current is None or current.status is GenerationStatus.CANCELLED:
            raise JobCancelled()
        if current.status is GenerationStatus.FAILED:
            raise JobFailed(current.failure_reason or "rendering failed")
        return current

    async def _fail(self, record: GenerationRecord, request: GenerationRequest, reason: str,
                    status: StatusMessage) -> None:
        current = await self.store.get(record.id, include_deleted=True)
        if current is not None and current.status is not GenerationStatus.FAILED:
            await self._quietly(self.store.mark_failed(record.id, reason), "record the failure", record.id)
        await status.finish()
        await self._show_failure(record, request, reason, status.reply)


async def attach(bot: ImagineBot) -> None:
    """setup_hook with SHARED_QUEUE=true: the bot's service and runner become the shared queue's; with
    LOCAL_WORKER=true the service built for the bot renders as one worker of the shared queue."""
    if not bot.store.shared:
        raise RuntimeError("SHARED_QUEUE=true needs PostgreSQL: set DATABASE_URL=postgresql+asyncpg://...")
    base = bot.service
    service = SharedQueueService.around(base, bot.store, bot.settings.queue_poll_s)
    await service.start()
    bot._owned.append(service)
    bot.service = service
    bot.runner = SharedJobRunner(bot, bot.store, service, queue_wait=bot.runner.queue_wait)
    if bot.settings.local_worker:
        worker = RenderWorker(bot.store, base, bot.settings, idle_wait=bot.idle_wait)
        await worker.start()
        bot._owned.append(worker)
