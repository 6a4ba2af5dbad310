"""Render speed, measured per batch size, and the ETAs that follow from it (the queue's /queue figures)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..jobs import QueueEntry

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


def seconds_left(estimate_s: float, elapsed_s: float, step: int, total: int) -> float:
    """Seconds left of a running batch: at the pace measured so far once a step is done (so step 10/50 has
    40 steps' worth left, whatever the estimate said), else the estimate less the time spent."""
    if total > 0 and step >= total:
        return 0.0
    if total > 0 and step > 0:
        return elapsed_s / step * (total - step)
    return max(estimate_s - elapsed_s, 0.0)


class RunningPace:
    """A rendering job's steps as heard from its worker (the shared queue): the first step heard and when, and
    the latest, so the time left follows the pace measured since, whenever the gateway started listening."""

    def __init__(self, step: int, total: int, at: float) -> None:
        self.first_step, self.first_at = step, at
        self.step, self.total = step, total

    def heard(self, step: int, total: int) -> None:
        self.step, self.total = step, total

    def seconds_left(self, estimate_s: float, now: float) -> float:
        """At the measured pace once a step has passed since the first one heard; until then the estimate's
        share for the steps left."""
        if self.total > 0 and self.step >= self.total:
            return 0.0
        if self.step > self.first_step:
            return (now - self.first_at) / (self.step - self.first_step) * (self.total - self.step)
        if self.total > 0:
            return estimate_s * (self.total - self.step) / self.total
        return estimate_s


Member = tuple[str, str]  # (job key, owner)


def queue_entries(running: Sequence[Member], running_left_s: float,
                  batches: Sequence[tuple[Sequence[Member], float]]) -> list[QueueEntry]:
    """Entries in queue order: the running batch at position 0, then each planned batch (its members and
    seconds) at 1, 2, …; jobs of one batch share its position and ETA, and ETAs never decrease."""
    entries = [QueueEntry(key, owner, 0, round(running_left_s, 1), len(running)) for key, owner in running]
    eta = running_left_s if running else 0.0
    for position, (members, seconds) in enumerate(batches, start=1):
        eta += max(seconds, 0.0)
        entries.extend(QueueEntry(key, owner, position, round(eta, 1), len(members)) for key, owner in members)
    return entries


def never_decreasing(entries: Sequence[QueueEntry]) -> list[QueueEntry]:
    """The same entries, each ETA raised to the one before it: a job is not done before those ahead of it."""
    floor = 0.0
    result = []
    for entry in entries:
        floor = max(floor, entry.eta_s)
        result.append(QueueEntry(entry.key, entry.owner, entry.position, floor, entry.batch_jobs))
    return result
