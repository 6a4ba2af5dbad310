"""The render queue: the only way the rest of the program renders.

One worker thread (a single-thread executor owned by the service) owns the pipeline, because
diffusers schedulers are not thread-safe; the event loop only queues, dispatches and relays
progress, so callers never block. Jobs are taken round-robin across owners, so one user's ten jobs
do not starve another user's one. A failing job fails alone; the worker keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Awaitable, Callable, Protocol, TypeVar

from .jobs import Job, JobState, QueueEntry, QueueSnapshot
from .request import (
    SEED_RANGE,
    GenerationRequest,
    Limits,
    Progress,
    QueueFull,
    RenderCancelled,
    RenderError,
    RenderResult,
    RequestError,
    check_model,
    check_prompt_length,
    validate_request,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Used for ETAs until the first render has been timed.
DEFAULT_SECONDS_PER_STEP = 0.1


class RendererLike(Protocol):
    """What the service needs from a renderer (generation.renderer.Renderer, or a fake in tests)."""

    def render(
        self,
        request: GenerationRequest,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> RenderResult: ...

    def native_size(self, model: str) -> int: ...

    def tokenizer(self, model: str) -> Any: ...  # None: no prompt-length check

    def load(self, model: str) -> float: ...

    # Optional: RequestError when the model's family cannot render the request (a sampler it lacks, a
    # negative prompt it cannot take, a size it cannot draw). Called by prepare(), before queueing.
    def check_request(self, request: GenerationRequest) -> None: ...


def _identity(awaitable: Awaitable[T]) -> Awaitable[T]:
    return awaitable


class GenerationService:
    """Validate, queue and render requests fairly on one worker thread."""

    def __init__(
        self,
        renderer: RendererLike,
        limits: Limits = Limits(),
        *,
        per_owner_cap: int = 5,
        total_cap: int = 50,
        idle_wait: Callable[[Awaitable[T]], Awaitable[T]] | None = None,
        max_attempts: int = 2,
        timing_window: int = 20,
    ):
        self.renderer = renderer
        self.limits = limits
        self.per_owner_cap = per_owner_cap
        self.total_cap = total_cap
        self.max_attempts = max_attempts  # tries per job for transient errors (GPU out of memory)
        # Wraps the dispatcher's wait for new work (SimCord: env.external_wait) so test harnesses
        # can tell an idle queue from a hung one.
        self._idle_wait = idle_wait or _identity
        self._jobs: dict[str, Job] = {}  # queued and running jobs
        self._queues: dict[str, deque[Job]] = {}  # owner -> their queued jobs, oldest first
        # Round-robin bookkeeping: the dispatch number of each owner's latest job. The owner served
        # longest ago (never = -1) goes next, so a newcomer does not wait behind a whole round.
        self._last_served: dict[str, int] = {}
        self._dispatched = 0
        self._submitted = 0  # submission counter: ties go to the oldest queued job
        self._running: Job | None = None
        self._timings: deque[tuple[float, int]] = deque(maxlen=timing_window)  # (seconds, steps x images)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None
        self._closing = False

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

    def _read_model_files(self) -> None:
        for model in self.limits.models:
            try:
                self.renderer.tokenizer(model)
                self.renderer.native_size(model)
            except Exception as error:  # reported again, to the user, when a request names the model
                log.warning("could not read the tokenizer or config of model %s: %s", model, error)

    async def close(self) -> None:
        """Cancel queued jobs, stop the running one at its next step, and stop the worker."""
        if self._dispatcher is None:
            return
        self._closing = True
        self._cancel_everything()
        self._wakeup.set()
        dispatcher, self._dispatcher = self._dispatcher, None
        try:
            if not dispatcher.done():  # a harness may already have cancelled it
                await dispatcher  # returns once the running job has stopped
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _cancel_everything(self) -> None:
        for queue in self._queues.values():
            for job in queue:
                self._jobs.pop(job.key, None)
                job._cancelled()
        self._queues.clear()
        if self._running is not None:
            self._running._cancel_requested.set()

    async def load_model(self, model: str) -> float:
        """Load `model` on the worker thread (e.g. at startup); returns the load time in seconds."""
        return await self._loop.run_in_executor(self._executor, self.renderer.load, model)

    # -- requests --

    def native_size(self, model: str = "tinyshapes") -> int:
        """The model's native image side in pixels (the base size for --ar); RequestError if unusable."""
        check_model(model, self.limits)
        return self._model_files(model)[1]

    def _model_files(self, model: str) -> tuple[Any, int]:
        """(tokenizer, native size) of a configured model; cached by the renderer after start()."""
        try:
            return self.renderer.tokenizer(model), self.renderer.native_size(model)
        except Exception:  # configured, but its files are missing or unreadable: an operator problem
            log.exception("model %s: could not read its tokenizer or config", model)
            raise RequestError(f"Model {model!r} is not available right now; try another model.") from None

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """Validate `request` (RequestError) and fill in what was left open: size and seeds.

        The chosen seeds are part of the returned request, so every image can be rendered again.
        """
        validate_request(request, self.limits)
        check_request = getattr(self.renderer, "check_request", None)
        if check_request is not None:  # the model's family rules, with a message naming what is allowed
            check_request(request)
        tokenizer, native = self._model_files(request.model)
        if tokenizer is not None:
            check_prompt_length("prompt", request.prompt, tokenizer)
            if request.negative_prompt:
                check_prompt_length("negative prompt", request.negative_prompt, tokenizer)
        changes: dict[str, Any] = {}
        if request.width is None or request.height is None:
            changes["width"] = request.width if request.width is not None else native
            changes["height"] = request.height if request.height is not None else native
        if request.seed is None:
            changes["seed"] = secrets.randbelow(SEED_RANGE)
        if request.variation_strength > 0 and request.variation_seed is None:
            changes["variation_seed"] = secrets.randbelow(SEED_RANGE)
        prepared = request.replace(**changes)
        validate_request(prepared, self.limits)  # the filled-in size must fit the limits too
        return prepared

    def submit(self, request: GenerationRequest, *, owner: str, key: str | None = None) -> Job:
        """prepare() the request and queue it; raises RequestError or QueueFull."""
        # A dispatcher cancelled from outside (SimCord detach) would leave the job queued forever.
        if self._dispatcher is None or self._dispatcher.done() or self._closing:
            raise RuntimeError("GenerationService is not running; await start() first")
        prepared = self.prepare(request)
        key = key or uuid.uuid4().hex
        if key in self._jobs:
            raise ValueError(f"A job with key {key!r} is already queued or running")
        owned = sum(1 for job in self._jobs.values() if job.owner == owner)
        if owned >= self.per_owner_cap:
            raise QueueFull(
                f"You already have {owned} renders queued or running (the limit is {self.per_owner_cap}); "
                "wait for one to finish."
            )
        if len(self._jobs) >= self.total_cap:
            raise QueueFull(f"The render queue is full ({self.total_cap} jobs); try again in a few minutes.")
        job = Job(key, owner, prepared, self._loop)
        self._jobs[key] = job
        self._submitted += 1
        job.sequence = self._submitted
        self._queues.setdefault(owner, deque()).append(job)
        self._wakeup.set()
        return job

    def cancel(self, key: str) -> bool:
        """Cancel a queued job now, or a running one at its next step. False if unknown or finished."""
        job = self._jobs.get(key)
        if job is None:
            return False
        if job is self._running:
            job._cancel_requested.set()
            log.info("job %s (owner %s): cancel requested while running", key, job.owner)
            return True
        queue = self._queues[job.owner]
        queue.remove(job)
        if not queue:
            del self._queues[job.owner]
        del self._jobs[key]
        job._cancelled()
        return True

    def get(self, key: str) -> Job | None:
        """A queued or running job (finished jobs are forgotten; keep the Job object to read them)."""
        return self._jobs.get(key)

    def snapshot(self) -> QueueSnapshot:
        """Queue order (position 0 is rendering) with ETAs from recent render speed."""
        per_step = self._seconds_per_step()
        entries: list[QueueEntry] = []
        eta = 0.0
        if self._running is not None:
            job = self._running
            elapsed = time.monotonic() - (job.started_at or time.monotonic())
            eta = max(per_step * _work(job.request) - elapsed, 0.0)
            entries.append(QueueEntry(job.key, job.owner, 0, round(eta, 1), job.state))
        for position, job in enumerate(self._dispatch_order(), start=1):
            eta += per_step * _work(job.request)
            entries.append(QueueEntry(job.key, job.owner, position, round(eta, 1), job.state))
        average = sum(seconds for seconds, _ in self._timings) / len(self._timings) if self._timings else 0.0
        return QueueSnapshot(entries, round(average, 3), len(entries))

    # -- worker --

    def _dispatch_order(self) -> list[Job]:
        """The order queued jobs will run in if nothing else is submitted."""
        queues = {owner: deque(jobs) for owner, jobs in self._queues.items()}
        last_served = dict(self._last_served)
        order = []
        while queues:
            order.append(self._take_next(queues, last_served, self._dispatched + len(order) + 1))
        return order

    def _next_job(self) -> Job | None:
        if not self._queues:
            return None
        self._dispatched += 1
        return self._take_next(self._queues, self._last_served, self._dispatched)

    @staticmethod
    def _take_next(queues: dict[str, deque[Job]], last_served: dict[str, int], dispatch_number: int) -> Job:
        """Round-robin across owners: the owner served longest ago (or never) goes next."""
        owner = min(queues, key=lambda name: (last_served.get(name, -1), queues[name][0].sequence))
        job = queues[owner].popleft()
        if not queues[owner]:
            del queues[owner]
        last_served[owner] = dispatch_number
        return job

    async def _dispatch(self) -> None:
        try:
            while not self._closing:
                job = self._next_job()
                if job is None:
                    self._wakeup.clear()
                    await self._idle_wait(self._wakeup.wait())
                    continue
                try:
                    await self._run(job)
                except asyncio.CancelledError:
                    job._cancel_requested.set()  # the worker thread stops at its next step
                    if not job.done:
                        job._cancelled()
                    raise
                except Exception:  # never let one job stop the worker
                    log.exception("job %s: unexpected error in the dispatcher", job.key)
                    if not job.done:
                        job._fail("Rendering failed because of an internal error.")
                finally:
                    self._running = None
                    self._jobs.pop(job.key, None)
        except asyncio.CancelledError:  # cancelled from outside (while idle too): end every job
            self._closing = True
            self._cancel_everything()
            raise

    async def _run(self, job: Job) -> None:
        self._running = job
        job.started_at = time.monotonic()
        job._set_state(JobState.RUNNING)
        loop = self._loop

        def on_progress(progress: Progress) -> None:  # runs on the worker thread
            try:
                loop.call_soon_threadsafe(job._emit, progress)
            except RuntimeError:  # the loop closed under a render that is about to be cancelled
                job._cancel_requested.set()

        render = partial(
            self.renderer.render, job.request, on_progress=on_progress, is_cancelled=job._cancel_requested.is_set
        )
        for attempt in range(1, self.max_attempts + 1):
            try:
                result = await loop.run_in_executor(self._executor, render)
            except RenderCancelled:
                job._cancelled()
                return
            except RenderError as error:
                if error.retryable and attempt < self.max_attempts and not job._cancel_requested.is_set():
                    log.warning(
                        "job %s: %s; retrying (attempt %d of %d)", job.key, error, attempt + 1, self.max_attempts
                    )
                    continue
                job._fail(error.reason)
                return
            except Exception as error:
                log.exception("job %s: render raised", job.key)
                job._fail(f"Rendering failed: {error}" if str(error) else f"Rendering failed ({type(error).__name__}).")
                return
            if job._cancel_requested.is_set():  # cancelled after the last step: the user asked for no result
                job._cancelled()
                return
            if result.model_load_s:
                log.info("job %s: loaded model %s in %.2fs", job.key, job.request.model, result.model_load_s)
            self._timings.append((result.duration_s, _work(job.request)))
            job._finish(result)
            return

    def _seconds_per_step(self) -> float:
        work = sum(steps for _, steps in self._timings)
        if not work:
            return DEFAULT_SECONDS_PER_STEP
        return sum(seconds for seconds, _ in self._timings) / work


def _work(request: GenerationRequest) -> int:
    """Denoising steps a request runs, over all its images; render time is about proportional to it."""
    steps = request.num_inference_steps
    if request.init_image is not None:
        steps = int(steps * request.strength)
    return max(steps, 1) * request.count
