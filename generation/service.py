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

from .jobs import Job, QueueEntry, QueueSnapshot
from .metadata import rendered_png
from .prompts import encoded_text
from .request import (
    RenderedImage,
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

    # Optional: {LoRA name: A1111 short hash} of the LoRAs a prompt asks for (the PNG's `Lora hashes`).
    def lora_hashes(self, prompt: str) -> dict[str, str]: ...


def _identity(awaitable: Awaitable[Any]) -> Awaitable[Any]:
    return awaitable


# Wraps a wait on the render queue (SimCord: env.external_wait), so harnesses tell idle from hung.
IdleWait = Callable[[Awaitable[Any]], Awaitable[Any]]


class GenerationService:
    """Validate, queue and render requests fairly on one worker thread."""

    def __init__(
        self,
        renderer: RendererLike,
        limits: Limits = Limits(),
        *,
        per_owner_cap: int = 5,
        total_cap: int = 50,
        idle_wait: IdleWait | None = None,
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
        self._reserved: dict[str, int] = {}  # owner -> reservations not yet submitted
        self._timings: deque[tuple[float, int]] = deque(maxlen=timing_window)  # (seconds, steps x images)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
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
        self._wake()
        dispatcher, self._dispatcher = self._dispatcher, None
        try:
            if not dispatcher.done():  # a harness may already have cancelled it
                await dispatcher  # returns once the running job has stopped
        finally:
            self._worker().shutdown(wait=False, cancel_futures=True)

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
        return await self._running_loop().run_in_executor(self._worker(), self.renderer.load, model)

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
            check_prompt_length("prompt", encoded_text(request.prompt), tokenizer)
            if request.negative_prompt:
                check_prompt_length("negative prompt", encoded_text(request.negative_prompt), tokenizer)
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

    def reserve(self, owner: str, cap: int | None = None) -> Reservation:
        """Hold room in the queue for one job of `owner`, or raise QueueFull saying when room is expected.

        Synchronous, so the caps hold however many commands arrive at once: take a reservation before
        recording the job, then `submit(..., reservation=…)` it (or `release()` it). `cap` lowers the
        per-owner cap for this call (a server's own limit); it never raises it.
        """
        self._check_room(owner, cap)
        self._reserved[owner] = self._reserved.get(owner, 0) + 1
        return Reservation(self, owner)

    def _check_room(self, owner: str, cap: int | None = None) -> None:
        owned = sum(1 for job in self._jobs.values() if job.owner == owner) + self._reserved.get(owner, 0)
        limit = self.per_owner_cap if cap is None else min(cap, self.per_owner_cap)
        if owned >= limit:
            soonest = min((entry.eta_s for entry in self.snapshot().for_owner(owner)), default=None)
            raise QueueFull(
                f"You already have {owned} renders queued or running (the limit is {limit}); "
                f"{_room_expected(soonest, 'your next one should finish')}"
            )
        if len(self._jobs) + sum(self._reserved.values()) >= self.total_cap:
            soonest = min((entry.eta_s for entry in self.snapshot().entries), default=None)
            raise QueueFull(
                f"The render queue is full ({self.total_cap} jobs); {_room_expected(soonest, 'room is expected')}"
            )

    def _release(self, owner: str) -> None:
        left = self._reserved.get(owner, 0) - 1
        if left > 0:
            self._reserved[owner] = left
        else:
            self._reserved.pop(owner, None)

    def png(self, request: GenerationRequest, rendered: RenderedImage) -> bytes:
        """The PNG file of one rendered image, with its A1111 parameters (LoRA hashes included)."""
        lora_hashes = getattr(self.renderer, "lora_hashes", None)
        return rendered_png(request, rendered, lora_hashes(request.prompt) if lora_hashes is not None else None)

    def submit(self, request: GenerationRequest, *, owner: str, key: str | None = None,
               reservation: Reservation | None = None, enforce_caps: bool = True,
               before_start: Callable[[], Awaitable[None]] | None = None) -> Job:
        """Queue a request that came out of prepare(); raises QueueFull without a reservation and room.

        The request is not validated again (prepare() did that once). `enforce_caps=False` queues work
        accepted earlier (a restart re-queueing it). `before_start` is awaited when the worker takes the
        job, before the model loads; if it raises, the job fails.
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
            if not reservation.belongs_to(self, owner):
                raise ValueError(f"this reservation holds room for {reservation.owner!r}, not for {owner!r}")
            reservation.consume()
        elif enforce_caps:
            self._check_room(owner)
        job = Job(key, owner, request, self._running_loop(), before_start)
        self._jobs[key] = job
        self._submitted += 1
        job.sequence = self._submitted
        self._queues.setdefault(owner, deque()).append(job)
        self._wake()
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
            entries.append(QueueEntry(job.key, job.owner, 0, round(eta, 1)))
        for position, job in enumerate(self._dispatch_order(), start=1):
            eta += per_step * _work(job.request)
            entries.append(QueueEntry(job.key, job.owner, position, round(eta, 1)))
        average = sum(seconds for seconds, _ in self._timings) / len(self._timings) if self._timings else 0.0
        return QueueSnapshot(entries, round(average, 3))

    # -- worker --

    def _dispatch_order(self) -> list[Job]:
        """The order queued jobs will run in if nothing else is submitted."""
        queues = {owner: deque(jobs) for owner, jobs in self._queues.items()}
        last_served = dict(self._last_served)
        order: list[Job] = []
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
                    wakeup = self._wakeup
                    assert wakeup is not None  # set by start(), like the dispatcher running this
                    wakeup.clear()
                    await self._idle_wait(wakeup.wait())
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
        job._started(time.monotonic())
        loop = self._running_loop()
        if job.before_start is not None:
            try:
                await job.before_start()
            except Exception:
                log.exception("job %s: could not be started", job.key)
                job._fail("The job could not be started because of an internal error.")
                return
            if job._cancel_requested.is_set():
                job._cancelled()
                return

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
                result = await loop.run_in_executor(self._worker(), render)
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


class Reservation:
    """Room in the queue held for one job of one owner, from the cap check until submit()."""

    def __init__(self, service: GenerationService, owner: str) -> None:
        self._service = service
        self.owner = owner
        self._held = True

    def belongs_to(self, service: GenerationService, owner: str) -> bool:
        return self._service is service and self.owner == owner

    def consume(self) -> None:
        if not self._held:
            raise RuntimeError("this reservation was already used or released")
        self._held = False
        self._service._release(self.owner)

    def release(self) -> None:
        """Give the room back (the job was not submitted after all); harmless when already used."""
        if self._held:
            self.consume()


def _room_expected(eta_s: float | None, what: str) -> str:
    if eta_s is None:
        return "try again in a moment."
    return f"{what} in about {max(round(eta_s), 1)} s."


def _work(request: GenerationRequest) -> int:
    """Denoising steps a request runs, over all its images; render time is about proportional to it."""
    steps = request.num_inference_steps
    if request.init_image is not None:
        steps = int(steps * request.strength)
    return max(steps, 1) * request.count
