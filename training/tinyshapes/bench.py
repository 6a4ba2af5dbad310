"""Time to render one image at native size with the shipped model, at the default settings.

    python -m training.tinyshapes.bench [--weights PATH] [--repeats 10] [--aspect 16:9]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from .build import WEIGHTS_DIR
from .data import BUCKETS
from .evaluate import GUIDANCE, STEPS, load, render


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--aspect", default="1:1", choices=list(BUCKETS), help="render at this bucket's size")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pipe = load(args.weights)
    print(f"load: {time.perf_counter() - started:.2f}s ({torch.get_num_threads()} threads)")
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
