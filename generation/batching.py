"""Rendering compatible requests together: which requests may share a pipeline call, and how many
images one call may hold.

`batch_key(request)` is the one place that says what a pipeline call needs equal: two requests with
equal keys can be rendered as one call (per-image prompts, negative prompts, seeds, variation noise and
init images; everything else shared). `BatchLimit` is the `BATCH_IMAGES` setting: a fixed number of
images per call, or `auto` (CPU: a quick probe at load; CUDA: grow while images/s improves, halve and
remember on out-of-memory, per model and size). The CPU probe's rule is pure: `probe_rates` (which sizes to
measure, from the seconds each call took) and `probed_limit` (the limit those rates give); the renderer
times its probe calls through a `ProbeTimer` (`wall_clock` in production).

Importing this module does not import torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from .prompts import has_weights, split_prompt
from .request import GenerationRequest

log = logging.getLogger(__name__)

AUTO = "auto"
# The most images `auto` lets one call hold (and the largest probe); a number setting may go higher.
AUTO_CEILING = 16
# A larger batch must beat the smaller one by this much in images/s to count as an improvement.
IMPROVEMENT = 1.05
PROBE_SIZES = (1, 2, 4, 8, 16)
# The same image rendered alone and inside a batch (fp32, CPU, tinyshapes, 20 steps DPM++ 2M): measured
# at most 1/255 on one or two pixel channels (mean 0.00008-0.00016 levels). The documented tolerance, in
# 0-255 levels per channel: a batched image differs from the same image alone by at most this much.
BATCH_TOLERANCE_MAX = 2
BATCH_TOLERANCE_MEAN = 0.01


def batch_key(request: GenerationRequest) -> Hashable:
    """What one pipeline call needs equal across the requests it renders.

    Equal: model, size, steps, sampler, guidance, tiling, text-to-image vs image-to-image and its strength, the
    LoRA set with weights (adapters are set per call), whether a negative prompt is given (SDXL draws
    zero embeddings for none, Flux's true CFG runs only with one), and for prompts with A1111 weights
    the prompt and negative prompt themselves (their embeddings are computed once per call). Free to
    differ per image: prompt, negative prompt, seed, variation seed and strength, init image, count.
    """
    parts = split_prompt(request.prompt)
    weighted = parts.weighted or has_weights(request.negative_prompt)
    image_to_image = request.init_image is not None
    return (
        request.model,
        request.width,
        request.height,
        request.num_inference_steps,
        request.sampler,
        request.guidance_scale,
        image_to_image,
        request.strength if image_to_image else None,
        tuple(sorted((tag.name, tag.weight) for tag in parts.loras)),
        bool(request.negative_prompt),
        (request.prompt, request.negative_prompt) if weighted else None,
        request.tiling,  # the convolutions' padding is set per call
    )


# Runs one probe call of that many images (the callable) and says how many seconds it took.
ProbeTimer = Callable[[int, Callable[[], object]], float]


def wall_clock(images: int, call: Callable[[], object]) -> float:
    """The production ProbeTimer: the call's wall-clock seconds."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def probe_rates(seconds_for: Callable[[int], float], sizes: Sequence[int] = PROBE_SIZES) -> dict[int, float]:
    """Images/s per call size, where `seconds_for(size)` runs (or looks up) one call of `size` images and
    gives its seconds; stops after the first size that does not beat the best so far by IMPROVEMENT."""
    rates: dict[int, float] = {}
    best = 0.0
    for size in sizes:
        rates[size] = size / max(seconds_for(size), 1e-9)
        if rates[size] < best * IMPROVEMENT:
            break
        best = max(best, rates[size])
    return rates


def probed_limit(rates: Mapping[int, float]) -> int:
    """The images per call a CPU probe's rates give: the smallest size within 5 % of the best (1 if none)."""
    best_rate = max(rates.values(), default=0.0)
    return min((size for size, rate in rates.items() if rate * IMPROVEMENT >= best_rate), default=1)


def bucket(images: int) -> int:
    """The batch size a call is padded to when compiled graphs should be reused: the next power of two."""
    size = 1
    while size < images:
        size *= 2
    return size


@dataclass
class _Growth:
    """CUDA `auto`: the current limit for one model and size, and the images/s measured per batch size."""

    limit: int = 1
    settled: bool = False  # stopped growing (no improvement, or out of memory)
    rates: dict[int, float] = field(default_factory=dict)


class BatchLimit:
    """How many images one pipeline call may hold (`BATCH_IMAGES`): a number, or `auto`.

    `auto` on a CPU: `set_probed(model, rates)` with images/s at 1, 2, 4, … images per call (measured
    by the renderer at load through `probe_rates`) fixes the model's limit. `auto` on
    CUDA (`grows=True`): the limit per model and size starts at 1 and doubles after a full batch that
    beat the previous size's images/s by 5 %; a batch that did not improve settles it at the previous
    size. Either way an out-of-memory batch halves the limit for that model and size, for good.
    """

    def __init__(self, setting: int | str = 1, *, grows: bool = False, ceiling: int = AUTO_CEILING):
        parsed = parse_batch_images(setting)
        self.auto = parsed == AUTO
        self.fixed = None if isinstance(parsed, str) else parsed
        self.grows = grows
        self.ceiling = ceiling
        self._probed: dict[str, int] = {}
        self._growth: dict[tuple[str, int, int], _Growth] = {}
        self._oom_cap: dict[tuple[str, int, int], int] = {}

    def __repr__(self) -> str:
        return f"BatchLimit({'auto' if self.auto else self.fixed})"

    def limit(self, model: str, width: int, height: int) -> int:
        key = (model, width, height)
        if self.fixed is not None:
            value = self.fixed
        elif self.grows:
            value = self._growth.setdefault(key, _Growth()).limit
        else:
            value = self._probed.get(model, 1)
        return max(1, min(value, self._oom_cap.get(key, value)))

    def needs_probe(self, model: str) -> bool:
        return self.auto and not self.grows and model not in self._probed

    def set_probed(self, model: str, rates: dict[int, float]) -> int:
        """Fix `model`'s limit from measured images/s per batch size (`probed_limit`)."""
        chosen = probed_limit(rates)
        self._probed[model] = chosen
        log.info("batch limit for %s: %d image(s) per call (probe, images/s: %s)", model, chosen,
                 ", ".join(f"{size}: {rate:.2f}" for size, rate in sorted(rates.items())))
        return chosen

    def record(self, model: str, width: int, height: int, images: int, seconds: float) -> None:
        """A call of `images` images took `seconds`: CUDA `auto` grows (or settles) the limit."""
        if not (self.auto and self.grows) or seconds <= 0:
            return
        growth = self._growth.setdefault((model, width, height), _Growth())
        rate = images / seconds
        growth.rates[images] = max(rate, growth.rates.get(images, 0.0))
        if growth.settled or images != growth.limit:
            return
        smaller = growth.rates.get(growth.limit // 2) if growth.limit > 1 else None
        if smaller is not None and rate < smaller * IMPROVEMENT:
            growth.limit //= 2
            growth.settled = True
            log.info("batch limit for %s at %dx%d settles at %d image(s)", model, width, height, growth.limit)
        elif growth.limit * 2 <= min(self.ceiling, self._oom_cap.get((model, width, height), self.ceiling)):
            growth.limit *= 2
        else:
            growth.settled = True

    def out_of_memory(self, model: str, width: int, height: int, images: int) -> None:
        """A call of `images` images ran out of memory: at most half of that for this model and size, for good."""
        key = (model, width, height)
        cap = max(1, images // 2)
        self._oom_cap[key] = min(cap, self._oom_cap.get(key, cap))
        growth = self._growth.get(key)
        if growth is not None:
            growth.limit = min(growth.limit, cap)
            growth.settled = True
        log.warning("out of memory with %d image(s) of %s at %dx%d: at most %d per call from now on",
                    images, model, width, height, self._oom_cap[key])


def parse_batch_images(value: int | str) -> int | str:
    """`auto` or a whole number ≥ 1 (the BATCH_IMAGES setting); ValueError otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if not text.isdigit():
            raise ValueError(f"BATCH_IMAGES must be 'auto' or a whole number of images, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"BATCH_IMAGES must be 'auto' or a whole number ≥ 1, got {value!r}")
    return value
