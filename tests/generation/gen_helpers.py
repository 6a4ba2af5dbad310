"""Helpers shared by the generation tests (a uniquely named module, so tests can import it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

import PIL.Image

from generation.batching import batch_key

from generation.request import (
    BatchPlace,
    GenerationRequest,
    Progress,
    RenderCancelled,
    RenderedImage,
    RenderError,
    RenderResult,
)

# Small, fast requests: 4 steps at the model's native size.
FAST = dict(num_inference_steps=4, width=64, height=64)

# How long a gated fake render waits for its gate before it gives up. Not a timing assertion: it only
# turns a test that would hang (e.g. a render blocking the event loop that should open the gate) into
# a failure.
HANG_GUARD_S = 60.0


def fast_request(prompt: str = "a red circle on a blue background", **changes) -> GenerationRequest:
    return GenerationRequest(prompt, **{**FAST, "seed": 1, **changes})


class FakeRenderer:
    """Stands in for the real renderer where the queue, not the pixels, is under test.

    Records the order in which requests render (`rendered`, and `events` if given, shared with the
    test); a prompt containing "explode" raises; each render takes `seconds`, in `steps` progress
    steps, and stops at a step when cancelled. With a `gate` (threading.Event) every render waits,
    after setting `started`, until the gate opens or the job is cancelled, so a test decides when
    renders may finish without relying on time. Switching models reports `load_s` as the load time.
    """

    def __init__(self, seconds: float = 0.01, steps: int = 4, *, gate: threading.Event | None = None,
                 events: list[str] | None = None, load_s: float = 0.0):
        self.seconds = seconds
        self.steps = steps
        self.gate = gate
        self.events = events if events is not None else []
        self.load_s = load_s
        self.loaded_model: str | None = None
        self.rendered: list[str] = []
        self.threads: set[str] = set()  # names of the threads that loaded or rendered
        self.started = threading.Event()  # a render has begun
        self.finished = threading.Event()  # the latest render returned or raised

    # The rest of the renderer protocol (generation.queue.RendererLike), as a plain CPU renderer answers.
    device = SimpleNamespace(type="cpu")

    def native_size(self, model: str) -> int:
        return 64

    def batch_key(self, request: GenerationRequest):
        return batch_key(request)

    def probe_batch_images(self, model: str) -> dict[int, float]:
        return {1: 1.0}

    def check_request(self, request: GenerationRequest) -> None:
        pass

    def defaults(self, model: str) -> dict[str, Any]:
        return {}

    def model_info(self, model: str) -> Any:
        return SimpleNamespace(family=SimpleNamespace(size_multiple=8), max_size=None)

    def source(self, model: str) -> Any:
        return SimpleNamespace(label=model)

    def lora_names(self) -> list[str]:
        return []

    def lora_hashes(self, prompt: str) -> dict[str, str]:
        return {}

    def render_batch(self, requests, *, on_progress=None, is_cancelled=None, images_per_call=None, place=None):
        """Job by job through render() (BatchingFakeRenderer renders a batch in one call)."""
        return [self.render(request, is_cancelled=is_cancelled,
                            on_progress=None if on_progress is None else partial(on_progress, index))
                for index, request in enumerate(requests)]

    def tokenizer(self, model: str):
        return None

    def load(self, model: str) -> float:
        self.threads.add(threading.current_thread().name)
        if model == self.loaded_model:
            return 0.0
        self.loaded_model = model
        self.events.append(f"load {model}")
        return self.load_s

    def _wait_for_gate(self, is_cancelled) -> None:
        deadline = time.monotonic() + HANG_GUARD_S
        while not self.gate.wait(0.005):
            if is_cancelled is not None and is_cancelled():
                raise RenderCancelled()
            if time.monotonic() > deadline:
                raise RuntimeError("the test never opened the fake renderer's gate")

    def _load_and_step(self, model: str, is_cancelled: Callable[[], bool] | None,
                       on_step: Callable[[int], None]) -> tuple[float, float]:
        """Load, wait at the gate (if any), then the steps, each cancellable and reported by `on_step(step)`:
        (the load's seconds, when the steps began)."""
        load_s = self.load(model)
        if self.gate is not None:
            self._wait_for_gate(is_cancelled)
        started = time.perf_counter()
        for step in range(1, self.steps + 1):
            if is_cancelled is not None and is_cancelled():
                raise RenderCancelled()
            time.sleep(self.seconds / self.steps)
            on_step(step)
        return load_s, started

    def render(self, request, *, on_progress=None, is_cancelled=None) -> RenderResult:
        self.threads.add(threading.current_thread().name)
        self.events.append(f"render {request.prompt}")
        self.finished.clear()
        self.started.set()
        try:
            def report(step: int) -> None:
                if on_progress is not None:
                    on_progress(Progress(step, self.steps, None))

            load_s, started = self._load_and_step(request.model, is_cancelled, report)
            if "explode" in request.prompt:
                raise RuntimeError("the fake renderer exploded")
            self.rendered.append(request.prompt)
            image = PIL.Image.new("RGB", (request.width, request.height))
            images = [RenderedImage(image, seed) for seed in request.image_seeds()]
            return RenderResult(request, images, time.perf_counter() - started, load_s)
        finally:
            self.finished.set()


class BatchingFakeRenderer(FakeRenderer):
    """A FakeRenderer that renders batches (`render_batch`), as the real renderer does for the service.

    Records the prompts of every call that completed (`calls`) and of every attempt (`attempts`); a call
    holding more than `oom_above` images raises a retryable out-of-memory error, as a GPU would.
    """

    def __init__(self, *args, oom_above: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.oom_above = oom_above
        self.calls: list[list[str]] = []
        self.attempts: list[list[str]] = []

    def render_batch(self, requests, *, on_progress=None, is_cancelled=None, images_per_call=None, place=None):
        self.threads.add(threading.current_thread().name)
        prompts = [request.prompt for request in requests]
        self.attempts.append(prompts)
        images = sum(request.count for request in requests)
        per_call = min(images, images_per_call or images)
        if self.oom_above is not None and per_call > self.oom_above:
            raise RenderError(f"Ran out of GPU memory rendering {images} image(s) at 64x64.", retryable=True)
        self.events.append(f"batch {', '.join(prompts)}")
        self.finished.clear()
        self.started.set()
        try:
            def report(step: int) -> None:
                if on_progress is not None:
                    for index in range(len(requests)):
                        on_progress(index, Progress(step, self.steps, None))

            load_s, started = self._load_and_step(requests[0].model, is_cancelled, report)
            self.calls.append(prompts)
            self.rendered.extend(prompts)
            results, row = [], 0
            for request in requests:
                rendered = []
                for seed in request.image_seeds():
                    where = place or BatchPlace(per_call, row % per_call)
                    rendered.append(RenderedImage(PIL.Image.new("RGB", (request.width, request.height)), seed,
                                                  place=where))
                    row += 1
                results.append(RenderResult(request, rendered, time.perf_counter() - started, load_s))
            return results
        finally:
            self.finished.set()


async def scrape(port: int, path: str) -> tuple[int, str]:
    """GET a path of a process's operator port (METRICS_PORT) on this machine: (status, body)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}
