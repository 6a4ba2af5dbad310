"""Time to render one image at native size with the shipped model, at the default settings.

    python -m training.tinyshapes.bench [--weights PATH] [--repeats 10] [--aspect 16:9] [--threads N]

CPU threads default to the bot's and the CLI's (one for the shipped model: generation.cpu_threads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from generation.console import silence_torchvision_fallback
from generation.cpu_threads import default_cpu_threads
from .build import WEIGHTS_DIR
from .data import BUCKETS
from .evaluate import GUIDANCE, STEPS, load, render


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--aspect", default="1:1", choices=list(BUCKETS), help="render at this bucket's size")
    parser.add_argument("--threads", type=int, default=default_cpu_threads(["tinyshapes"]),
                        help="torch CPU threads (default: the bot's for the shipped model)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    silence_torchvision_fallback()
    started = time.perf_counter()
    pipe = load(args.weights)
    # The load average says how far a figure is from a quiet machine's (the dev machine is shared).
    print(f"load: {time.perf_counter() - started:.2f}s ({torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    width, height = BUCKETS[args.aspect]
    prompt = ["a red circle on a blue background"]
    render(pipe, prompt, [0], width=width, height=height)  # warm-up: first call allocates and picks kernels

    timings = []
    for seed in range(args.repeats):
        started = time.perf_counter()
        render(pipe, prompt, [seed], width=width, height=height)
        timings.append(time.perf_counter() - started)
    print(f"one {width}x{height} image, DPM++ 2M, {STEPS} steps, guidance {GUIDANCE:g}: "
          f"median {statistics.median(timings):.3f}s, min {min(timings):.3f}s, max {max(timings):.3f}s "
          f"over {args.repeats} renders")

    started = time.perf_counter()
    render(pipe, prompt * 4, list(range(4)), width=width, height=height)
    print(f"batch of 4: {(time.perf_counter() - started) / 4:.3f}s per image")


if __name__ == "__main__":
    main()
