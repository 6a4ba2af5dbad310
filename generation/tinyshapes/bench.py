"""Time to render one image at native size with the shipped model, at the default settings.

    python -m generation.tinyshapes.bench [--weights PATH] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from .build import WEIGHTS_DIR
from .evaluate import GUIDANCE, STEPS, load, render


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pipe = load(args.weights)
    print(f"load: {time.perf_counter() - started:.2f}s ({torch.get_num_threads()} threads)")
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    prompt = ["a red circle on a blue background"]
    render(pipe, prompt, [0])  # warm-up: first call allocates and picks kernels

    timings = []
    for seed in range(args.repeats):
        started = time.perf_counter()
        render(pipe, prompt, [seed])
        timings.append(time.perf_counter() - started)
    print(f"one {size}x{size} image, DPM++ 2M, {STEPS} steps, guidance {GUIDANCE:g}: "
          f"median {statistics.median(timings):.3f}s, min {min(timings):.3f}s, max {max(timings):.3f}s "
          f"over {args.repeats} renders")

    started = time.perf_counter()
    render(pipe, prompt * 4, list(range(4)))
    print(f"batch of 4: {(time.perf_counter() - started) / 4:.3f}s per image")


if __name__ == "__main__":
    main()
