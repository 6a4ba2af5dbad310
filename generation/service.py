"""The render queue: the only way the rest of the program renders.

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
import secrets
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from collections.abc import Hashable
from typing import Any, Awaitable, Callable, Protocol, TypeVar, cast

from .batching import BatchLimit, batch_key
from .jobs import Job, QueueEntry, QueueSnapshot
from .metadata import rendered_png
from .prompt_words import check_readable
from .prompts import encoded_text
from .request import (
    BatchPlace,
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

# Bound at import: a harness (SimCord) may swap time.monotonic inside the caller's code, and the
# dispatcher and snapshot() must read one clock.
_monotonic = time.monotonic
# Used for ETAs until the first render has been timed: seconds per image per denoising step.
DEFAULT_SECONDS_PER_STEP = 0.1
NOT_STARTED = "The job could not be started because of an internal error."


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

    # Optional, defined on the renderer's class (a wrapper that only forwards attributes renders job by
    # job): render_batch(requests, *, on_progress(i, Progress), is_cancelled, images_per_call, place)
    # -> list[RenderResult]; batch_key(request) -> Hashable | None (None: never shares a call);
    # probe_batch_images(model) -> {images per call: images/s} (BATCH_IMAGES=auto on a CPU).

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
        batch_images: int | str = 1,
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
        self._running: list[Job] = []  # the batch rendering now (cancelled jobs stay until it ends)
        self._running_since = 0.0
        self._reserved: dict[str, int] = {}  # owner -> reservations not yet submitted
        self._timings: deque[float] = deque(maxlen=timing_window)  # seconds per recent batch
        # Seconds per image per denoising step, per number of images in a call: ETAs at each batch size.
        self._speed: dict[int, deque[float]] = {}
        self._timing_window = timing_window
        device = getattr(getattr(renderer, "device", None), "type", "cpu")
        # BATCH_IMAGES: a number, or auto (CPU: probe once per model; CUDA: grow while images/s improves).
        self.batch_limit = BatchLimit(batch_images, grows=device == "cuda")
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
        for job in self._running:
            job._cancel_requested.set()

    async def load_model(self, model: str) -> float:
        """Load `model` on the worker thread (e.g. at startup); returns the load time in seconds."""
        return await self._running_loop().run_in_executor(self._worker(), self.renderer.load, model)

    # -- requests --

    def model_defaults(self, model: str) -> dict[str, Any]:
        """Request fields for `model` when nobody sets them (its family's, or its ModelSpec's)."""
        defaults = getattr(self.renderer, "defaults", None)
        return dict(defaults(model)) if defaults is not None else {}

    def size_multiple(self, model: str) -> int:
        """What width and height of `model` must be multiples of (8, or 16 for SD3 and Flux)."""
        model_info = getattr(self.renderer, "model_info", None)
        try:
            return int(model_info(model).family.size_multiple) if model_info is not None else 8
        except RequestError:
            return 8  # an unusable model: prepare() reports it with its reason

    def lora_names(self) -> list[str]:
        """The LoRAs members may pick (the renderer's LORA_DIR), for the /imagine lora option."""
        names = getattr(self.renderer, "lora_names", None)
        return list(names()) if names is not None else []

    def model_label(self, model: str) -> str:
        """How to show a model to users (a ModelSpec's display name, else its name)."""
        source = getattr(self.renderer, "source", None)
        return str(source(model).label) if source is not None else model

    def native_size(self, model: str = "tinyshapes") -> int:
        """The model's native image side in pixels (the base size for --ar); RequestError if unusable."""
        check_model(model, self.limits)
        return self._model_files(model)[1]

    def _model_files(self, model: str) -> tuple[Any, int]:
        """(tokenizer, native size) of a configured model; cached by the renderer after start()."""
        try:
            return self.renderer.tokenizer(model), self.renderer.native_size(model)
        except RequestError:
            raise  # the renderer already names what is wrong (a missing path, an unsupported pipeline)
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
            check_readable(request.prompt, tokenizer, request.model)  # not only words it cannot read
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
               before_start: Callable[[], Awaitable[None]] | None = None,
               place: BatchPlace | None = None) -> Job:
        """Queue a request that came out of prepare(); raises QueueFull without a reservation and room.

        The request is not validated again (prepare() did that once). `enforce_caps=False` queues work
        accepted earlier (a restart re-queueing it). `before_start` is awaited when the worker takes the
        job, before the model loads; if it raises, the job fails. `place` (a count=1 request) renders the
        image alone at that place of a padded call, as a recorded image was rendered: bit-exact again.
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
        job.place = place
        job.batch_key = None if place is not None else self._batch_key(request)
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
        """Queue order with ETAs from measured render speed. Position 0 is the batch rendering now, 1 the
        next batch, and so on: jobs that will share a batch share its position and its ETA."""
        entries: list[QueueEntry] = []
        eta = 0.0
        if self._running:
            elapsed = _monotonic() - self._running_since
            eta = max(self._batch_seconds(self._running) - elapsed, 0.0)
            entries.extend(QueueEntry(job.key, job.owner, 0, round(eta, 1)) for job in self._running if not job.done)
        for position, batch in enumerate(self._plan(), start=1):
            eta += self._batch_seconds(batch)
            entries.extend(QueueEntry(job.key, job.owner, position, round(eta, 1)) for job in batch)
        average = sum(self._timings) / len(self._timings) if self._timings else 0.0
        return QueueSnapshot(entries, round(average, 3))

    # -- batches --

    @property
    def _batches(self) -> bool:
        """Whether the renderer renders batches: `render_batch` on its class (a wrapper that only forwards
        attributes, as the bot tests use, is asked job by job so its own render() is the one called)."""
        return callable(getattr(type(self.renderer), "render_batch", None))

    def _batch_key(self, request: GenerationRequest) -> Hashable | None:
        """What a pipeline call needs equal (generation.batching), as the renderer's family allows it."""
        if not self._batches:
            return None
        if callable(getattr(type(self.renderer), "batch_key", None)):
            return cast("Hashable | None", cast(Any, self.renderer).batch_key(request))
        return batch_key(request)

    def _plan(self) -> list[list[Job]]:
        """The batches queued jobs will render in if nothing else is submitted."""
        queues = {owner: deque(jobs) for owner, jobs in self._queues.items()}
        last_served = dict(self._last_served)
        dispatched = self._dispatched
        batches: list[list[Job]] = []
        while queues:
            batch, dispatched = self._form_batch(queues, last_served, dispatched)
            batches.append(batch)
        return batches

    def _dispatch_order(self) -> list[Job]:
        """The order queued jobs will run in if nothing else is submitted."""
        return [job for batch in self._plan() for job in batch]

    def _next_batch(self) -> list[Job]:
        batch, self._dispatched = self._form_batch(self._queues, self._last_served, self._dispatched)
        return batch

    def _form_batch(self, queues: dict[str, deque[Job]], last_served: dict[str, int],
                    dispatched: int) -> tuple[list[Job], int]:
        """Take the next batch out of `queues`: the next job in fair order leads; compatible jobs join.

        Joiners come in fair order, up to the batch limit in images, each job whole. Once a job has been
        passed over (it cannot share the call, or does not fit), its owner takes no further part and no
        owner already in the batch adds another job: nothing then overtakes the passed-over job except
        at most one job per other owner, which round-robin would allow anyway. So one owner's ten jobs
        cannot fill the batches ahead of another owner's one.
        """
        dispatched += 1
        lead = self._take_next(queues, last_served, dispatched)
        batch = [lead]
        key = lead.batch_key
        if key is None or not queues:
            return batch, dispatched
        request = lead.request
        assert request.width is not None and request.height is not None
        room = self.batch_limit.limit(request.model, request.width, request.height) - request.count
        if room <= 0:
            return batch, dispatched
        in_batch, blocked, passed_over = {lead.owner}, set(), False
        for job in self._fair_order(queues, last_served, dispatched):
            if room <= 0:
                break
            if job.owner in blocked or (passed_over and job.owner in in_batch):
                continue
            if job.batch_key == key and job.request.count <= room:
                batch.append(job)
                in_batch.add(job.owner)
                room -= job.request.count
            else:
                passed_over = True
                blocked.add(job.owner)
        for job in batch[1:]:
            dispatched += 1
            queue = queues[job.owner]
            queue.remove(job)
            if not queue:
                del queues[job.owner]
            last_served[job.owner] = dispatched
        return batch, dispatched

    def _fair_order(self, queues: dict[str, deque[Job]], last_served: dict[str, int], dispatched: int) -> list[Job]:
        """The fair order of the jobs in `queues`, taking nothing out of them."""
        queues = {owner: deque(jobs) for owner, jobs in queues.items()}
        last_served = dict(last_served)
        order: list[Job] = []
        while queues:
            order.append(self._take_next(queues, last_served, dispatched + len(order) + 1))
        return order

    @staticmethod
    def _take_next(queues: dict[str, deque[Job]], last_served: dict[str, int], dispatch_number: int) -> Job:
        """Round-robin across owners: the owner served longest ago (or never) goes next."""
        owner = min(queues, key=lambda name: (last_served.get(name, -1), queues[name][0].sequence))
        job = queues[owner].popleft()
        if not queues[owner]:
            del queues[owner]
        last_served[owner] = dispatch_number
        return job

    # -- worker --

    async def _dispatch(self) -> None:
        try:
            while not self._closing:
                if not self._queues:
                    wakeup = self._wakeup
                    assert wakeup is not None  # set by start(), like the dispatcher running this
                    wakeup.clear()
                    await self._idle_wait(wakeup.wait())
                    continue
                await self._probe_if_needed()
                if not self._queues or self._closing:
                    continue
                batch = self._next_batch()
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
        if not self.batch_limit.auto or self.batch_limit.grows or not self._batches:
            return
        lead = self._fair_order(self._queues, self._last_served, self._dispatched)[0]
        model = lead.request.model
        if lead.batch_key is None or not self.batch_limit.needs_probe(model):
            return
        waiting = [job for queue in self._queues.values() for job in queue]
        if lead.request.count == 1 and not any(job is not lead and job.batch_key == lead.batch_key for job in waiting):
            return
        probe = getattr(type(self.renderer), "probe_batch_images", None)
        rates: dict[int, float] = {1: 1.0}
        if probe is not None:
            try:
                rates = await self._running_loop().run_in_executor(
                    self._worker(), cast(Any, self.renderer).probe_batch_images, model)
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
                retry = self._retry_plan(jobs, attempt, images_per_call, images)
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
        self._record_speed(jobs, results, time.perf_counter() - started - load_s, images_per_call)
        for job, result in zip(jobs, results):
            if job.done:  # cancelled while the batch went on: its images are dropped
                continue
            if job._cancel_requested.is_set():  # cancelled after the last step: the user asked for no result
                job._cancelled()
                continue
            job._finish(result)

    def _retry_plan(self, jobs: list[Job], attempt: int, images_per_call: int | None,
                    images: int) -> tuple[str, list[tuple[list[Job], int, int | None]]] | None:
        """After an out-of-memory error: (what happens next, [(jobs, attempt, images per call)]), or None."""
        if len(jobs) > 1:
            half = len(jobs) // 2
            return (f"splitting the batch of {images} images in two",
                    [(jobs[:half], 1, images_per_call), (jobs[half:], 1, images_per_call)])
        per_call = images_per_call or jobs[0].request.count
        if per_call > 1 and self._batches:
            return f"retrying {per_call // 2} image(s) per call", [(jobs, 1, per_call // 2)]
        if attempt < self.max_attempts:
            return f"retrying (attempt {attempt + 1} of {self.max_attempts})", [(jobs, attempt + 1, images_per_call)]
        return None

    def _render_call(self, requests: list[GenerationRequest], relay: Callable[[int, Progress], None],
                     is_cancelled: Callable[[], bool], images_per_call: int | None,
                     place: BatchPlace | None) -> list[RenderResult]:
        """On the worker thread: one batch through the renderer (job by job for a renderer without batches)."""
        if self._batches:
            results = cast(Any, self.renderer).render_batch(
                requests, on_progress=relay, is_cancelled=is_cancelled, images_per_call=images_per_call, place=place)
            return cast(list[RenderResult], results)
        assert len(requests) == 1, "a renderer without render_batch renders one job at a time"
        return [self.renderer.render(requests[0], on_progress=partial(relay, 0), is_cancelled=is_cancelled)]

    def _record_speed(self, jobs: list[Job], results: list[RenderResult], seconds: float,
                      images_per_call: int | None) -> None:
        """Seconds per image-step at this batch size (ETAs), and images/s for the CUDA auto limit."""
        images = sum(len(result.images) for result in results)
        steps = max(_steps(job.request) for job in jobs)
        if images == 0 or seconds <= 0:
            return
        self._timings.append(seconds)
        per_call = self._images_per_call(jobs, images)
        if images_per_call is not None:
            per_call = min(per_call, images_per_call)
        self._speed.setdefault(per_call, deque(maxlen=self._timing_window)).append(seconds / (images * steps))
        lead = jobs[0].request
        if per_call == images and lead.width is not None and lead.height is not None:
            self.batch_limit.record(lead.model, lead.width, lead.height, images, seconds)

    def _images_per_call(self, jobs: list[Job], images: int) -> int:
        """A batch's images go in one call, except where the family renders each image alone."""
        if self._batches and jobs and jobs[0].batch_key is None:
            return 1
        return images

    def _seconds_per_image_step(self, images: int) -> float:
        """Measured at this batch size, else at the nearest measured one, else DEFAULT_SECONDS_PER_STEP."""
        if not self._speed:
            return DEFAULT_SECONDS_PER_STEP
        size = min(self._speed, key=lambda measured: (abs(measured - images), measured))
        samples = self._speed[size]
        return sum(samples) / len(samples)

    def _batch_seconds(self, batch: list[Job]) -> float:
        """How long a batch takes: images x steps x the measured seconds per image-step at its size."""
        images = sum(job.request.count for job in batch)
        steps = max((_steps(job.request) for job in batch), default=1)
        return self._seconds_per_image_step(self._images_per_call(batch, images)) * images * steps


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


def _steps(request: GenerationRequest) -> int:
    """Denoising steps each image of a request runs; render time is about proportional to images x steps."""
    steps = request.num_inference_steps
    if request.init_image is not None:
        steps = int(steps * request.strength)
    return max(steps, 1)


def _emit_unless_cancelled(job: Job, progress: Progress) -> None:
    if not job._cancel_requested.is_set() and not job.done:
        job._emit(progress)


def _describe(jobs: list[Job]) -> str:
    if len(jobs) == 1:
        return f"job {jobs[0].key}"
    return f"batch of jobs {', '.join(job.key for job in jobs)}"
