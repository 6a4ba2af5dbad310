"""What every tiny shapes training stage shares: the noise schedule, the device ``train.main`` picks,
bf16 autocast, the log, the cosine learning rate, the restart-proof clock, the training buckets and the
border loss weights.

``DEVICE`` is reassigned by ``train.main``: read it as ``training_common.DEVICE`` at call time, never
``from .training_common import DEVICE`` (that copy would stay on the CPU).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import data

BETAS = torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64)  # same as build_scheduler()
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0).float()


DEVICE = torch.device("cpu")  # set by train.main(); every stage puts its tensors here


def autocast():
    """bf16 autocast on CUDA (the tiny model trains fine in it); nothing on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEVICE.type == "cuda")


def log(work: Path, message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    with open(work / "train.log", "a") as f:
        f.write(line + "\n")


def cosine_lr(base: float, fraction: float, warmup: float) -> float:
    if fraction < warmup:
        return base * fraction / warmup
    progress = min(1.0, (fraction - warmup) / (1 - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class Clock:
    """Training time that survives restarts: elapsed seconds are stored in the checkpoint."""

    def __init__(self, already: float = 0.0):
        self.start = time.monotonic() - already

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


# Training buckets: name -> (width, height, batch, highest timestep). Every /imagine aspect ratio at
# its own size, plus 2x of 1:1 at low noise only (the upscale pass).
UPSCALE_BUCKET = ("upscale 2x", (2 * data.IMAGE_SIZE, 2 * data.IMAGE_SIZE), 400)


def bucket_table(batch: int, upscale: bool) -> dict[str, dict]:
    table = {}
    for ratio, (w, h) in data.BUCKETS.items():
        table[ratio] = {"size": (w, h), "batch": batch, "max_t": 1000}
    if upscale:
        name, (w, h), max_t = UPSCALE_BUCKET
        pixels = data.IMAGE_SIZE * data.IMAGE_SIZE
        table[name] = {"size": (w, h), "batch": max(4, batch * pixels // (w * h)), "max_t": max_t}
    return table


def border_weights(height: int, width: int, ring: int = 3, weight: float = 10.0) -> torch.Tensor:
    """Per-pixel loss weights: ``weight`` on the outermost ``ring`` pixels, 1 inside (against the frame)."""
    weights = torch.ones(1, 1, height, width)
    weights[..., :ring, :] = weights[..., -ring:, :] = weights[..., :, :ring] = weights[..., :, -ring:] = weight
    return weights / weights.mean()
