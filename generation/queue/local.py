"""The render queue in this process: the fair in-process scheduler, the store, and the finish step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..telemetry import events
from .waiter import PLAIN, Waiter

if TYPE_CHECKING:
    from storage import GenerationRecord, Store

    from ..telemetry import Metrics

    from ..jobs import QueueSnapshot
    from ..request import GenerationRequest, Limits
    from .admission import Reservation
    from .finish import Finisher
    from .inprocess import GenerationService
    from .interface import JobWatcher


class LocalQueue:
    """RenderQueue on a GenerationService of this process: a job is marked running when the scheduler
    takes it, and finished (images stored, marked done) by the shared finish step."""

    def __init__(self, scheduler: GenerationService, store: Store, finisher: Finisher, *,
                 waiter: Waiter = PLAIN, metrics: Metrics | None = None) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self.store = store
        self.finisher = finisher
        # Wraps the wait for a result: a wait on the render thread (SimCord declares it external).
        self.waiter = waiter

    @property
    def limits(self) -> Limits:
        return self.scheduler.limits

    @property
    def per_owner_cap(self) -> int:
        return self.scheduler.per_owner_cap

    # The scheduler is started and stopped by whoever built it (the app; a worker may render with it too).
    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return self.scheduler.prepare(request)

    def model_defaults(self, model: str) -> dict[str, Any]:
        return self.scheduler.model_defaults(model)

    def native_size(self, model: str) -> int:
        return self.scheduler.native_size(model)

    def size_multiple(self, model: str) -> int:
        return self.scheduler.size_multiple(model)

    def picture_limits(self, model: str) -> Limits:
        return self.scheduler.picture_limits(model)

    def lora_names(self) -> list[str]:
        return self.scheduler.lora_names()

    def instruction_pictures(self, model: str) -> int:
        return self.scheduler.instruction_pictures(model)

    def model_label(self, model: str) -> str:
        return self.scheduler.model_label(model)

    def skipped_words(self, model: str, prompt: str) -> list[str]:
        return self.scheduler.skipped_words(model, prompt)

    def reserve(self, owner: str, cap: int | None = None) -> Reservation:
        return self.scheduler.reserve(owner, cap)

    async def render(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
                     watcher: JobWatcher, *, classify: bool) -> GenerationRecord:
        """A job that was rendering when a previous process died renders in a call of its own: were it the
        cause, its batch-mates would otherwise use up their attempts with it."""
        async def mark_running() -> None:
            await self.store.mark_running(record.id)
            events.job_started(self.metrics, record, attempt=record.attempts + 1)
            watcher.started()

        job = self.scheduler.submit(request, owner=str(record.owner_id), key=str(record.id),
                                    reservation=reservation, enforce_caps=False, before_start=mark_running,
                                    alone=record.attempts > 0)
        await watcher.queued(self.scheduler.snapshot().entry(job.key))
        events.queue_seen(self.metrics, self.scheduler.snapshot())
        job.add_progress_listener(watcher.progress)
        try:
            result = await self.waiter.idle(job.result())
        finally:
            events.queue_seen(self.metrics, self.scheduler.snapshot())
        return await self.finisher.finish(self.store, record.id, result, classify=classify)

    def cancel(self, key: str) -> bool:
        return self.scheduler.cancel(key)

    def snapshot(self) -> QueueSnapshot:
        return self.scheduler.snapshot()

    def prompt(self, key: str) -> str | None:
        job = self.scheduler.get(key)
        return job.request.prompt if job is not None else None
