"""A render worker of the shared queue: claims jobs from PostgreSQL in fair order (storage.claims),
renders them on its own scheduler, finishes them (the same step as the in-process queue, NSFW_CLASSIFIER
included) under its lease, and heartbeats. `python -m generation.worker` runs one per process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage import CorruptImage, InvalidTransition, signals
from storage.repository import LeaseLost

from ..jobs import JobCancelled, JobFailed
from ..request import RequestError
from ..telemetry import events
from .listening import start_listening
from .records import request_from_record
from .tasks import BackgroundTasks
from .waiter import PLAIN, Waiter

if TYPE_CHECKING:
    from storage import GenerationRecord, Store

    from ..jobs import Job
    from ..request import Progress
    from ..telemetry import Metrics
    from .finish import Finisher
    from .inprocess import GenerationService

log = logging.getLogger(__name__)

# At most one progress NOTIFY per job per this many seconds (the gateway edits at most once a second anyway).
PROGRESS_INTERVAL_S = 0.25


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker claims and how it holds it (from the bot's Settings: WORKER_ID, LEASE_S, ...)."""

    models: tuple[str, ...]
    max_size: int
    lease_s: float = 30.0
    poll_s: float = 5.0
    jobs: int = 1  # jobs in flight at once (WORKER_JOBS)
    max_attempts: int = 3
    worker_id: str | None = None


class RenderWorker:
    """Claims jobs from the shared queue, renders them on `scheduler`, finishes them, heartbeats."""

    def __init__(self, store: Store, scheduler: GenerationService, finisher: Finisher, config: WorkerConfig, *,
                 waiter: Waiter = PLAIN, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.scheduler = scheduler
        self.finisher = finisher
        self.config = config
        self.worker_id = config.worker_id or default_worker_id()
        self.lease_s = config.lease_s
        self.poll_s = config.poll_s
        self.jobs = max(config.jobs, 1)
        self.models = list(config.models)
        self.max_size = config.max_size
        self.loaded_model: str | None = None
        self.waiter = waiter
        self.inflight: dict[int, Job | None] = {}
        self._wake = asyncio.Event()
        self._tasks = BackgroundTasks("worker")
        self._listener: signals.Listener | None = None
        self._listening: asyncio.Task[None] | None = None
        self._done = (0, 0, 0.0)  # jobs, images, render seconds since the last heartbeat

    async def start(self) -> None:
        await self.store.register_worker(self.worker_id, host=socket.gethostname(), models=self.models,
                                         max_size=self.max_size)
        self._listener = signals.Listener(str(self.store.engine.url.render_as_string(hide_password=False)),
                                          [signals.WORK, signals.CANCEL], self._on_signal,
                                          on_reconnect=self._wake.set)
        self._listening = await start_listening(self._listener, self.waiter)
        self._spawn(self._claim_loop(), "claims")
        self._spawn(self._heartbeat_loop(), "heartbeats")
        log.info("worker %s: rendering %s (sides up to %d), lease %.1fs", self.worker_id, ", ".join(self.models),
                 self.max_size, self.lease_s)

    async def close(self) -> None:
        """Stop claiming; jobs in flight are cancelled (their leases expire, so other workers take them)."""
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        for job in self.inflight.values():
            if job is not None:
                self.scheduler.cancel(job.key)
        await self._tasks.close()
        try:
            await self.store.worker_heartbeat(self.worker_id, loaded_model=self.loaded_model, current_jobs=[],
                                              stopped=True)
        except Exception:
            log.info("worker %s: could not record the stop", self.worker_id, exc_info=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coroutine, name=f"worker {name}")

    def _on_signal(self, channel: str, payload: str) -> None:
        if channel == signals.WORK:
            self._wake.set()
        elif channel == signals.CANCEL:
            job = self.inflight.get(int(payload))
            if job is not None and self.scheduler.cancel(job.key):
                log.info("worker %s: job #%s cancelled by the gateway", self.worker_id, payload)

    async def _claim_loop(self) -> None:
        while True:
            self._wake.clear()
            room = self.jobs - len(self.inflight)
            claimed: list[GenerationRecord] = []
            if room > 0:
                started = time.perf_counter()
                try:
                    claimed, failed = await self.store.claim(
                        self.worker_id, models=self.models, max_size=self.max_size, loaded_model=self.loaded_model,
                        lease_s=self.lease_s, limit=room, max_attempts=self.config.max_attempts)
                    if self.metrics is not None:
                        self.metrics.claimed(time.perf_counter() - started)
                except Exception:
                    log.exception("worker %s: claiming failed; trying again", self.worker_id)
                    if self.metrics is not None:
                        self.metrics.database_error("claim")
                    claimed, failed = [], []
                for record in failed:
                    if self.metrics is not None:
                        self.metrics.lease_expired(False)
                    await self._notify(signals.DONE, f"{record.id} {record.status.value}")
                for record in claimed:
                    self.inflight[record.id] = None
                    self._spawn(self._render(record), f"job #{record.id}")
            if claimed:
                continue
            try:  # QUEUE_POLL_S=0: notifications only
                await asyncio.wait_for(self.waiter.idle(self._wake.wait()), self.poll_s or None)
            except TimeoutError:
                pass

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.waiter.idle(asyncio.sleep(self.lease_s / 3))
            try:
                ids = list(self.inflight)
                held = await self.store.renew_leases(self.worker_id, ids, self.lease_s)
                for lost in set(ids) - held:
                    job = self.inflight.get(lost)
                    if job is not None and self.scheduler.cancel(job.key):
                        log.warning("worker %s: lost the lease of job #%s; stopped it", self.worker_id, lost)
                jobs, images, seconds = self._done
                self._done = (0, 0, 0.0)
                await self.store.worker_heartbeat(self.worker_id, loaded_model=self.loaded_model,
                                                  current_jobs=sorted(self.inflight), jobs_done=jobs,
                                                  images_done=images, render_s=seconds)
            except Exception:
                log.exception("worker %s: heartbeat failed", self.worker_id)
                if self.metrics is not None:
                    self.metrics.database_error("heartbeat")

    async def _notify(self, channel: str, payload: str) -> None:
        try:
            await self.store.notify(channel, payload)
        except Exception:
            log.info("NOTIFY %s %s failed", channel, payload, exc_info=True)

    async def _render(self, record: GenerationRecord) -> None:
        generation_id = record.id
        events.job_started(self.metrics, record, attempt=record.attempts, worker_id=self.worker_id)
        try:
            init_image = await self.store.read_init_image(generation_id) if record.has_init_image else None
            # Read only where there are some: with no await before submit, jobs claimed together share a call.
            references = await self.store.read_references(generation_id) if record.sref_path or record.oref_path else {}
            request = self.scheduler.prepare(request_from_record(record, init_image, references))
            # A job some worker was rendering when it died renders alone (a poison job takes nobody along).
            job = self.scheduler.submit(request, owner=str(record.owner_id), key=str(generation_id),
                                        enforce_caps=False, alone=record.attempts > 1)
            self.inflight[generation_id] = job
            self.loaded_model = request.model
            self._follow(job, generation_id)
            result = await job.result()
            # A worker cannot see Discord channels (age-restricted or not): it classifies every result.
            done = await self.finisher.finish(self.store, generation_id, result, classify=True,
                                              worker_id=self.worker_id)
            jobs, count, seconds = self._done
            self._done = (jobs + 1, count + len(done.images), seconds + result.duration_s)
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
