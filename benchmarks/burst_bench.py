"""Throughput benchmark: a burst of queued jobs through GenerationService vs plain diffusers.

    python -m benchmarks.burst_bench --threads 1 [--rounds 3] [--batch-images auto] [--steps 20] [--size 64]

The burst: 10 jobs from 4 users, 16 images (counts 4,1,1,1 / 2,2,1 / 1,2 / 1), each job its own prompt
and seed, 64x64, 20 steps, DPM++ 2M, all queued at once. Three sides render the same 16 images with the
same loaded pipeline in one process, interleaved round by round (the order rotates) so background load
affects all alike:

- plain diffusers, one image per call: `pipe(prompt, generator=Generator().manual_seed(seed))` per image;
- plain diffusers batched: calls of B images (prompt lists, one CPU generator per image), B being the
  batch size the service uses (its BATCH_IMAGES: auto probes once, before the timed rounds);
- the service: all 10 jobs submitted from their 4 owners at once, each with a progress listener as the
  bot has; timed from the first submit to the last result.

Prints images/s per side (median over rounds) and the ratios. A benchmark, not a test: asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import torch

from generation import GenerationRequest, GenerationService, Limits, Progress
from generation.samplers import make_scheduler

# (owner, count) of the 10 jobs, in submission order: 4 owners, 16 images.
BURST = [("alice", 4), ("alice", 1), ("alice", 1), ("alice", 1), ("bob", 2), ("bob", 2), ("bob", 1),
         ("carol", 1), ("carol", 2), ("dave", 1)]
SHAPES = ["circle", "square", "triangle", "star", "ring"]
COLOURS = ["red", "green", "blue", "yellow", "purple"]


def burst_requests(size: int, steps: int, sampler: str, model: str) -> list[tuple[str, GenerationRequest]]:
    jobs = []
    for number, (owner, count) in enumerate(BURST):
        prompt = f"a {COLOURS[number % 5]} {SHAPES[(number * 2) % 5]} on a {COLOURS[(number + 2) % 5]} background"
        jobs.append((owner, GenerationRequest(prompt, width=size, height=size, num_inference_steps=steps,
                                              sampler=sampler, seed=1000 + 10 * number, count=count, model=model)))
    return jobs


def images_of(jobs: list[tuple[str, GenerationRequest]]) -> list[tuple[GenerationRequest, int]]:
    return [(request, seed) for _, request in jobs for seed in request.image_seeds()]


def plain(renderer: Any, jobs: list[tuple[str, GenerationRequest]], per_call: int) -> int:
    """Plain diffusers: the loaded pipeline, the sampler's scheduler, one seeded CPU generator per image,
    `per_call` images per call (prompt lists). Returns the number of images rendered."""
    loaded = renderer.loaded
    pipe = loaded.txt2img
    images = images_of(jobs)
    for start in range(0, len(images), per_call):
        chunk = images[start:start + per_call]
        lead = chunk[0][0]
        pipe.scheduler = make_scheduler(lead.sampler, loaded.scheduler_config, seed=chunk[0][1],
                                        table=loaded.family.samplers)
        generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in chunk]
        pipe(
            prompt=[request.prompt for request, _ in chunk] if per_call > 1 else lead.prompt,
            width=lead.width,
            height=lead.height,
            num_inference_steps=lead.num_inference_steps,
            guidance_scale=lead.guidance_scale,
            generator=generators if per_call > 1 else generators[0],
        )
    return len(images)


async def through_service(service: GenerationService, jobs: list[tuple[str, GenerationRequest]]) -> int:
    submitted = []
    for owner, request in jobs:
        job = service.submit(service.prepare(request), owner=owner, enforce_caps=False)
        steps: list[Progress] = []
        job.add_progress_listener(steps.append)
        submitted.append(job)
    results = await asyncio.gather(*(job.result() for job in submitted))
    return sum(len(result.images) for result in results)


async def run(args: argparse.Namespace) -> None:
    from generation.renderer import Renderer

    renderer = Renderer(args.model, device=args.device, cpu_threads=args.threads)
    model = renderer.default_model
    service = GenerationService(renderer, Limits(models=(model,)), per_owner_cap=20, total_cap=50,
                                batch_images=args.batch_images)
    await service.start()
    try:
        load_s = await service.load_model(model)
        if args.threads is not None and renderer.device.type == "cpu":
            torch.set_num_threads(args.threads)  # the plain sides run on this thread
        jobs = burst_requests(args.size, args.steps, args.sampler, model)
        total = sum(request.count for _, request in jobs)
        # Warm-up: the service's first burst also runs its batch-size probe (BATCH_IMAGES=auto on a CPU).
        await through_service(service, jobs)
        batch = service.batch_limit.limit(model, args.size, args.size)
        plain(renderer, jobs[:1], 1)
        plain(renderer, jobs[:2], batch)
        print(f"device={renderer.device} threads={torch.get_num_threads()} model={model} (loaded in {load_s:.2f}s)")
        print(f"burst: {len(jobs)} jobs from {len({owner for owner, _ in jobs})} users = {total} images, "
              f"{args.size}x{args.size}, {args.steps} steps, {args.sampler}; service batch limit {batch} "
              f"(BATCH_IMAGES={args.batch_images}); {args.rounds} interleaved rounds")
        sides = ("plain, 1 image per call", f"plain, {batch} images per call", "imagine-bot service")
        rates: dict[str, list[float]] = {side: [] for side in sides}
        for round_number in range(args.rounds):
            order = sides[round_number % 3:] + sides[:round_number % 3]
            for side in order:
                started = time.perf_counter()
                if side == sides[0]:
                    count = plain(renderer, jobs, 1)
                elif side == sides[1]:
                    count = plain(renderer, jobs, batch)
                else:
                    count = await through_service(service, jobs)
                rates[side].append(count / (time.perf_counter() - started))
            print(f"round {round_number + 1}: " + ", ".join(f"{side} {rates[side][-1]:.2f}" for side in sides))
    finally:
        await service.close()

    medians = {side: statistics.median(values) for side, values in rates.items()}
    print("images/s (median of rounds):")
    for side in sides:
        print(f"  {side:<28} {medians[side]:.2f}")
    # Within a round the sides run back to back, so per-round ratios cancel slow drifts in background load.
    batched = statistics.median(s / p for s, p in zip(rates[sides[2]], rates[sides[1]]))
    single = statistics.median(s / p for s, p in zip(rates[sides[2]], rates[sides[0]]))
    print(f"service / plain batched at {batch}: {batched:.2f}x (median of per-round ratios; acceptance >= 0.9)")
    print(f"service / plain one per call: {single:.2f}x (median of per-round ratios; acceptance >= 1.6)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.burst_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--sampler", default="DPM++ 2M")
    parser.add_argument("--model", default="tinyshapes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads for every side")
    parser.add_argument("--batch-images", default="auto", help="the service's BATCH_IMAGES: auto or a number")
    args = parser.parse_args(argv)

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
