"""The in-process scheduler: validates, queues and renders jobs fairly on one worker thread.

`LocalQueue` puts it behind the RenderQueue interface; a shared-queue worker renders with it too.

One worker thread (a single-thread executor owned by the service) owns the pipeline, because
diffusers schedulers are not thread-safe; the event loop only queues, dispatches and relays
progress, so callers never block. Jobs are taken round-robin across owners, so one user's ten jobs
do not starve another user's one. A failing job fails alone; the worker keeps serving.

The worker renders a batch, not a job: the next job in the fair order leads, and queued jobs that can
share its pipeline call (equal `generation.batching.batch_key`) join it from the following owners in
fair order, up to the batch limit in images (`batch_images`: a number or "auto"). A job's images always
go together. Each job sees its own progress and previews; cancelling one drops its images while the
batch goes on; an out-of-memory batch is split and retried, so no bystander fails for another's request.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from ..batching import BatchLimit
from ..jobs import Job, QueueSnapshot
from ..request import BatchPlace, GenerationRequest, Limits, Progress, RenderCancelled, RenderError, RenderResult
from ..telemetry.metrics import Metrics
from .admission import Admission, Reservation
from .eta import RenderSpeed, queue_entries, seconds_left
from .renderer import RendererLike
from .requests import RequestChecker
from .scheduler import FairQueue, retry_plan
from .waiter import PLAIN, Waiter

log = logging.getLogger(__name__)

# Bound at import: a harness (SimCord) may swap time.monotonic inside the caller's code, and the
# dispatcher and snapshot() must read one clock.
_monotonic = time.monotonic
NOT_STARTED = "The job could not be started because of an internal error."


class GenerationService(RequestChecker):
    """Validate, queue and render requests fairly on one worker thread."""

    def __init__(
        self,
        renderer: RendererLike,
        limits: Limits = Limits(),
        *,
        per_owner_cap: int = 5,
        total_cap: int = 50,
        waiter: Waiter = PLAIN,
        max_attempts: int = 2,
        timing_window: int = 20,
        batch_images: int | str = 1,
    ):
        super().__init__(renderer, limits)
        self.admission = Admission(per_owner_cap, total_cap, owned=self._owned, total=lambda: len(self._jobs),
                                   soonest_done=self._soonest_done)
        self.max_attempts = max_attempts  # tries per job for transient errors (GPU out of memory)
        # The dispatcher's wait for new work goes through it, so test harnesses tell idle from hung.
        self.waiter = waiter
        self._jobs: dict[str, Job] = {}  # queued and running jobs
        self._queue: FairQueue[Job] = FairQueue()  # queued jobs, in fair order (generation.queue.scheduler)
        self._submitted = 0  # submission counter: ties go to the oldest queued job
        self._running: list[Job] = []  # the batch rendering now (cancelled jobs stay until it ends)
        self._running_since = 0.0
        self.speed = RenderSpeed(timing_window)  # measured per batch size: ETAs
        # BATCH_IMAGES: a number, or auto (CPU: probe once per model; CUDA: grow while images/s improves).
        self.batch_limit = BatchLimit(batch_images, grows=renderer.device.type == "cuda")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False
        self.metrics: Metrics | None = None  # set by whoever wires the process (bot.app, generation.worker)

    # -- lifecycle --

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._wakeup = asyncio.Event()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="generation-dispatcher")
        # prepare() runs on the event loop: read each model's tokenizer and configs from disk now,
        # on the worker thread, so the first request does not stall every other coroutine.
        await self._loop.run_in_executor(self._executor, self._read_model_files)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("GenerationService is not running; await start() first")
        return self._loop

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise RuntimeError("GenerationService is not running; await start() first")
        return self._executor

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def close(self) -> None:
        """Cancel queued jobs, stop the running one at its next step, and stop the worker."""
        if self._dispatcher is None:
            return
        self._closing = True
        self._cancel_everything()
        self._wake()
        dispatcher, self._dispatcher = self._dispatcher, None
        try:
            if not dispatcher.done():  # a harness may already have cancelled it
                await dispatcher  # returns once the running job has stopped
        finally:
            self._worker().shutdown(wait=False, cancel_futures=True)

    def _cancel_everything(self) -> None:
        for job in self._queue.jobs():
            self._jobs.pop(job.key, None)
            job._cancelled()
        self._queue.clear()
        for job in self._running:
            job._cancel_requested.set()

    async def load_model(self, model: str) -> float:
        """Load `model` on the worker thread (e.g. at startup); returns the load time in seconds."""
        return await self._running_loop().run_in_executor(self._worker(), self.renderer.load, model)

    @property
    def per_owner_cap(self) -> int:
        return self.admission.per_owner_cap

    @property
    def total_cap(self) -> int:
        return self.admission.total_cap

    def reserve(self, owner: str, cap: int | None = None) -> Reservation:
        """Hold room in the queue for one job of `owner`, or raise QueueFull saying when room is expected.

        Synchronous, so the caps hold however many commands arrive at once: take a reservation before
        recording the job, then `submit(..., reservation=…)` it (or `release()` it).
        """
        return self.admission.reserve(owner, cap)

    def _owned(self, owner: str) -> int:
        return sum(1 for job in self._jobs.values() if job.owner == owner)

    def _soonest_done(self, owner: str | None) -> float | None:
        entries = self.snapshot().entries if owner is None else self.snapshot().for_owner(owner)
        return min((entry.eta_s for entry in entries), default=None)

    def submit(self, request: GenerationRequest, *, owner: str, key: str | None = None,
               reservation: Reservation | None = None, enforce_caps: bool = True,
               before_start: Callable[[], Awaitable[None]] | None = None,
               place: BatchPlace | None = None, alone: bool = False) -> Job:
        """Queue a request that came out of prepare(); raises QueueFull without a reservation and room.

        The request is not validated again (prepare() did that once). `enforce_caps=False` queues work
        accepted earlier (a restart re-queueing it). `before_start` is awaited when the worker takes the
        job, before the model loads; if it raises, the job fails. `place` (a count=1 request) renders the
        image alone at that place of a padded call, as a recorded image was rendered: bit-exact again.
        `alone` keeps the job out of other jobs' calls (a job that was rendering when the process died:
        if it is what brought the process down, it takes nobody else with it the next time).
        """
        # A dispatcher cancelled from outside (SimCord detach) would leave the job queued forever.
        if self._dispatcher is None or self._dispatcher.done() or self._closing:
            raise RuntimeError("GenerationService is not running; await start() first")
        if request.seed is None or request.width is None or request.height is None:
            raise ValueError("submit() takes a request from prepare() (seed and size chosen)")
        key = key or uuid.uuid4().hex
        if key in self._jobs:
            raise ValueError(f"A job with key {key!r} is already queued or running")
        if reservation is not None:
            if not reservation.belongs_to(self.admission, owner):
                raise ValueError(f"this reservation holds room for {reservation.owner!r}, not for {owner!r}")
            reservation.consume()
        elif enforce_caps:
            self.admission.check_room(owner)
        job = Job(key, owner, request, self._running_loop(), before_start)
        job.place = place
        job.batch_key = None if place is not None or alone else self._batch_key(request)
        self._jobs[key] = job
        self._submitted += 1
        job.sequence = self._submitted
        self._queue.add(job)
        self._wake()
        return job

    def cancel(self, key: str) -> bool:
        """Cancel a queued job now, or a running one at its next step. False if unknown or finished."""
        job = self._jobs.get(key)
        if job is None:
            return False
        if job in self._running:
            job._cancel_requested.set()
            log.info("job %s (owner %s): cancel requested while running", key, job.owner)
            if any(other is not job and not other.done and not other._cancel_requested.is_set()
                   for other in self._running):
                # The batch goes on for the others, in the shape their records will name; this job's
                # images are dropped when it ends. Alone (or last), the render stops at its next step.
                del self._jobs[key]
                job._cancelled()
            return True
        self._queue.remove(job)
        del self._jobs[key]
        job._cancelled()
        return True

    def get(self, key: str) -> Job | None:
        """A queued or running job (finished jobs are forgotten; keep the Job object to read them)."""
        return self._jobs.get(key)

    def snapshot(self) -> QueueSnapshot:
        """Queue order with ETAs from measured render speed. Position 0 is the batch rendering now, 1 the
        next batch, and so on: jobs that will share a batch share its position and its ETA."""
        running = [job for job in self._running if not job.done]
        left = 0.0
        if running:
            # The batch's steps advance together: its least advanced job says how far the call has come.
            progress = min((job.progress for job in running if job.progress is not None),
                           key=lambda done: done.step / max(done.total, 1), default=None)
            left = seconds_left(self._batch_seconds(self._running), _monotonic() - self._running_since,
                                progress.step if progress else 0, progress.total if progress else 0)
        batches = [([(job.key, job.owner) for job in batch], self._batch_seconds(batch)) for batch in self._plan()]
        entries = queue_entries([(job.key, job.owner) for job in running], left, batches)
        return QueueSnapshot(entries, round(self.speed.average_call_s(), 3))

    # -- batches --

    def _batch_key(self, request: GenerationRequest) -> Hashable | None:
        """What a pipeline call needs equal (generation.batching), as the renderer's family allows it."""
        return self.renderer.batch_key(request)

    def _images_in_a_call(self, lead: GenerationRequest) -> int:
        """The batch limit for a lead request's model and size (BATCH_IMAGES)."""
        assert lead.width is not None and lead.height is not None
        return self.batch_limit.limit(lead.model, lead.width, lead.height)

    def _plan(self) -> list[list[Job]]:
        """The batches queued jobs will render in if nothing else is submitted."""
        return self._queue.plan(self._images_in_a_call)

    # -- worker --

    async def _dispatch(self) -> None:
        try:
            while not self._closing:
                if not self._queue:
                    wakeup = self._wakeup
                    assert wakeup is not None  # set by start(), like the dispatcher running this
                    wakeup.clear()
                    await self.waiter.idle(wakeup.wait())
                    continue
                await self._probe_if_needed()
                if not self._queue or self._closing:
                    continue
                batch = self._queue.next_batch(self._images_in_a_call)
                try:
                    await self._run_batch(batch)
                except asyncio.CancelledError:
                    for job in batch:
                        job._cancel_requested.set()  # the worker thread stops at its next step
                        if not job.done:
                            job._cancelled()
                    raise
                except Exception:  # never let one batch stop the worker
                    log.exception("%s: unexpected error in the dispatcher", _describe(batch))
                    for job in batch:
                        if not job.done:
                            job._fail("Rendering failed because of an internal error.")
                finally:
                    self._running = []
                    for job in batch:
                        if self._jobs.get(job.key) is job:
                            del self._jobs[job.key]
        except asyncio.CancelledError:  # cancelled from outside (while idle too): end every job
            self._closing = True
            self._cancel_everything()
            raise

    async def _probe_if_needed(self) -> None:
        """BATCH_IMAGES=auto on a CPU: measure images/s per batch size once per model, the first time
        more than one image could share a call (a few seconds for tinyshapes)."""
        if not self.batch_limit.auto or self.batch_limit.grows:
            return
        lead = self._queue.fair_order()[0]
        model = lead.request.model
        if lead.batch_key is None or not self.batch_limit.needs_probe(model):
            return
        waiting = self._queue.jobs()
        if lead.request.count == 1 and not any(job is not lead and job.batch_key == lead.batch_key for job in waiting):
            return
        rates: dict[int, float] = {1: 1.0}
        try:
            rates = await self._running_loop().run_in_executor(self._worker(), self.renderer.probe_batch_images, model)
        except Exception:
            log.exception("probing batch sizes of %s failed; rendering one image per call", model)
        self.batch_limit.set_probed(model, rates)

    async def _run_batch(self, batch: list[Job]) -> None:
        self._running = list(batch)
        self._running_since = _monotonic()
        live: list[Job] = []
        for job in batch:
            job._started(self._running_since)
        for job in batch:
            if job.before_start is not None and not job.done:
                try:
                    await job.before_start()
                except Exception:
                    log.exception("job %s: could not be started", job.key)
                    if not job.done:
                        job._fail(NOT_STARTED)
                    continue
            if job._cancel_requested.is_set():
                if not job.done:
                    job._cancelled()
                continue
            live.append(job)
        if live:
            await self._render(live, attempt=1, images_per_call=None)

    async def _render(self, jobs: list[Job], *, attempt: int, images_per_call: int | None) -> None:
        """Render `jobs` in one call (their images `images_per_call` at a time when given). Out of memory:
        split the batch in halves, then a job's images, then retry up to max_attempts."""
        for job in jobs:
            if job._cancel_requested.is_set() and not job.done:
                job._cancelled()
        jobs = [job for job in jobs if not job._cancel_requested.is_set()]
        if not jobs:
            return
        loop = self._running_loop()

        def relay(index: int, progress: Progress) -> None:  # runs on the worker thread
            try:
                loop.call_soon_threadsafe(_emit_unless_cancelled, jobs[index], progress)
            except RuntimeError:  # the loop closed under a render that is about to be cancelled
                for job in jobs:
                    job._cancel_requested.set()

        def all_cancelled() -> bool:  # the call is interrupted only when nobody in it wants it any more
            return all(job._cancel_requested.is_set() for job in jobs)

        requests = [job.request for job in jobs]
        lead = requests[0]
        assert lead.width is not None and lead.height is not None
        images = sum(request.count for request in requests)
        render = partial(self._render_call, requests, relay, all_cancelled, images_per_call, jobs[0].place)
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._worker(), render)
        except RenderCancelled:
            for job in jobs:
                if not job.done:
                    job._cancelled()
            return
        except RenderError as error:
            if error.retryable and not all_cancelled():
                retry = retry_plan(jobs, attempt, images_per_call, images, self.max_attempts)
                if retry is not None:
                    log.warning("%s: %s; %s", _describe(jobs), error, retry[0])
                    self.batch_limit.out_of_memory(lead.model, lead.width, lead.height, images)
                    for part, next_attempt, per_call in retry[1]:
                        await self._render(part, attempt=next_attempt, images_per_call=per_call)
                    return
            for job in jobs:
                if not job.done:
                    if job._cancel_requested.is_set():
                        job._cancelled()
                    else:
                        job._fail(error.reason)
            return
        except Exception as error:
            log.exception("%s: render raised", _describe(jobs))
            reason = f"Rendering failed: {error}" if str(error) else f"Rendering failed ({type(error).__name__})."
            for job in jobs:
                if not job.done:
                    job._fail(reason)
            return
        load_s = max((result.model_load_s for result in results), default=0.0)
        if load_s:
            log.info("%s: loaded model %s in %.2fs", _describe(jobs), lead.model, load_s)
        seconds = time.perf_counter() - started - load_s
        self._record_speed(jobs, results, seconds, images_per_call)
        if self.metrics is not None:
            self.metrics.batch_rendered(lead.model, sum(len(result.images) for result in results),
                                        lead.num_inference_steps or 0, seconds)
            if load_s:
                self.metrics.model_load_finished(lead.model, load_s)
        for job, result in zip(jobs, results):
            if job.done:  # cancelled while the batch went on: its images are dropped
                continue
            if job._cancel_requested.is_set():  # cancelled after the last step: the user asked for no result
                job._cancelled()
                continue
            job._finish(result)

    def _render_call(self, requests: list[GenerationRequest], relay: Callable[[int, Progress], None],
                     is_cancelled: Callable[[], bool], images_per_call: int | None,
                     place: BatchPlace | None) -> list[RenderResult]:
        """On the worker thread: one batch through the renderer."""
        return self.renderer.render_batch(requests, on_progress=relay, is_cancelled=is_cancelled,
                                          images_per_call=images_per_call, place=place)

    def _record_speed(self, jobs: list[Job], results: list[RenderResult], seconds: float,
                      images_per_call: int | None) -> None:
        """Seconds per image-step at this batch size (ETAs), and images/s for the CUDA auto limit."""
        images = sum(len(result.images) for result in results)
        if images == 0 or seconds <= 0:
            return
        per_call = self._images_per_call(jobs, images)
        if images_per_call is not None:
            per_call = min(per_call, images_per_call)
        self.speed.record([job.request for job in jobs], images, per_call, seconds)
        lead = jobs[0].request
        if per_call == images and lead.width is not None and lead.height is not None:
            self.batch_limit.record(lead.model, lead.width, lead.height, images, seconds)

    def _images_per_call(self, jobs: list[Job], images: int) -> int:
        """A batch's images go in one call, except where the family renders each image alone."""
        if jobs and jobs[0].batch_key is None:
            return 1
        return images

    def _batch_seconds(self, batch: list[Job]) -> float:
        """How long a batch takes: images x steps x the measured seconds per image-step at its size."""
        images = sum(job.request.count for job in batch)
        return self.speed.batch_seconds([job.request for job in batch], self._images_per_call(batch, images))


def _emit_unless_cancelled(job: Job, progress: Progress) -> None:
    if not job._cancel_requested.is_set() and not job.done:
        job._emit(progress)


def _describe(jobs: list[Job]) -> str:
    if len(jobs) == 1:
        return f"job {jobs[0].key}"
    return f"batch of jobs {', '.join(job.key for job in jobs)}"
