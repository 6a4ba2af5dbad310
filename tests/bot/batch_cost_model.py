"""A deterministic cost model for BATCH_IMAGES=auto's CPU probe, for the crash tests' processes.

On a loaded machine the measured probe may settle on 1 image per call, and then a kill would never land in
a batch. With the model, the probe still renders its real calls (`Renderer.probe_batch_images`), but reads
modelled seconds instead of the wall clock (its `timer` seam), so `auto` settles on the same limit on an
idle or a busy machine: `LANES` images per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from generation.batching import probed_limit

# A CPU as wide as this many images: a call of n images takes ceil(n / LANES) call times.
LANES = 4
CALL_S = 1.0


def modelled_seconds(images: int, call: Callable[[], object]) -> float:
    """A ProbeTimer: runs the real call, and says it took ceil(images / LANES) call times."""
    call()
    return math.ceil(images / LANES) * CALL_S


def modelled_probe(renderer: Any, model: str, log: Callable[[str], None]) -> dict[int, float]:
    """`renderer.probe_batch_images(model)` timed by the model; logs `limit=N`, the limit `auto` takes from it."""
    rates: dict[int, float] = renderer.probe_batch_images(model, timer=modelled_seconds)
    log(f"limit={probed_limit(rates)}")
    return rates
