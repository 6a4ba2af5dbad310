"""Helpers shared by the generation tests (a uniquely named module, so tests can import it)."""

from __future__ import annotations

import threading
import time

import PIL.Image

from generation.request import GenerationRequest, Progress, RenderCancelled, RenderedImage, RenderResult

# Small, fast requests: 4 steps at the model's native size.
FAST = dict(num_inference_steps=4, width=64, height=64)


def fast_request(prompt: str = "a red circle on a blue background", **changes) -> GenerationRequest:
    return GenerationRequest(prompt, **{**FAST, "seed": 1, **changes})


class FakeRenderer:
    """Stands in for the real renderer where the queue, not the pixels, is under test.

    Records the order in which requests render; a prompt containing "explode" raises; each render
    takes `seconds`, in `steps` progress steps, and stops at a step when cancelled.
    """

    def __init__(self, seconds: float = 0.01, steps: int = 4):
        self.seconds = seconds
        self.steps = steps
        self.rendered: list[str] = []
        self.started = threading.Event()
        self.finished = threading.Event()  # the latest render returned or raised

    def native_size(self, model: str) -> int:
        return 64

    def tokenizer(self, model: str):
        return None

    def load(self, model: str) -> float:
        return 0.0

    def render(self, request, *, on_progress=None, is_cancelled=None) -> RenderResult:
        self.started.set()
        self.finished.clear()
        try:
            started = time.perf_counter()
            for step in range(1, self.steps + 1):
                if is_cancelled is not None and is_cancelled():
                    raise RenderCancelled()
                time.sleep(self.seconds / self.steps)
                if on_progress is not None:
                    on_progress(Progress(step, self.steps, None))
            if "explode" in request.prompt:
                raise RuntimeError("the fake renderer exploded")
            self.rendered.append(request.prompt)
            image = PIL.Image.new("RGB", (request.width, request.height))
            images = [RenderedImage(image, seed) for seed in request.image_seeds()]
            return RenderResult(request, images, time.perf_counter() - started)
        finally:
            self.finished.set()
