"""Render speed, measured per batch size, and the ETAs that follow from it (the queue's /queue figures)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..request import GenerationRequest

# Used for ETAs until the first render has been timed: seconds per image per denoising step.
DEFAULT_SECONDS_PER_STEP = 0.1


def steps_of(request: GenerationRequest) -> int:
    """Denoising steps each image of a request runs; render time is about proportional to images x steps."""
    steps = request.num_inference_steps
    if request.init_image is not None and request.edit_mode != "instruction":  # an instruction edit runs every step
        steps = int(steps * request.strength)
    return max(steps, 1)


class RenderSpeed:
    """Seconds per image per denoising step at each number of images in a call, over recent calls."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.timings: deque[float] = deque(maxlen=window)  # seconds per recent call
        self.per_image_step: dict[int, deque[float]] = {}  # images in a call -> recent seconds per image-step

    def record(self, requests: list[GenerationRequest], images: int, per_call: int, seconds: float) -> None:
        steps = max(steps_of(request) for request in requests)
        self.timings.append(seconds)
        self.per_image_step.setdefault(per_call, deque(maxlen=self.window)).append(seconds / (images * steps))

    def average_call_s(self) -> float:
        return sum(self.timings) / len(self.timings) if self.timings else 0.0

    def seconds_per_image_step(self, images: int) -> float:
        """Measured at this batch size, else at the nearest measured one, else DEFAULT_SECONDS_PER_STEP."""
        if not self.per_image_step:
            return DEFAULT_SECONDS_PER_STEP
        size = min(self.per_image_step, key=lambda measured: (abs(measured - images), measured))
        samples = self.per_image_step[size]
        return sum(samples) / len(samples)

    def batch_seconds(self, requests: list[GenerationRequest], per_call: int) -> float:
        """How long a batch takes: images x steps x the measured seconds per image-step at its size."""
        images = sum(request.count for request in requests)
        steps = max((steps_of(request) for request in requests), default=1)
        return self.seconds_per_image_step(per_call) * images * steps
