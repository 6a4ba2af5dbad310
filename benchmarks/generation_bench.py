"""Benchmark: render time through GenerationService vs calling the diffusers pipeline directly.

    python -m benchmarks.generation_bench [--runs 10] [--steps 20] [--size 64] [--count 1] [--threads 1]

Both sides render the same prepared request with the same loaded pipeline in the same process,
interleaved (direct, service, service, direct, ...) so background load affects both alike. The
service side is timed from submit() to the awaited result, with a progress listener attached as
the bot has, so it includes queueing, the executor hop, per-step progress and previews. A few more
service renders then measure event-loop lag with a ticker task and compare the worst lag with
LOOP_LAG_BUDGET_S (the tests check that the loop keeps running, without timing it). Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np
import torch

from generation import GenerationRequest, GenerationService, Limits, Progress
from generation.samplers import make_scheduler

# The worst event-loop lag a render may cause: the bot's other coroutines (Discord heartbeats, other
# users' commands) must not notice a render. Reported by the benchmark, not asserted by the tests.
LOOP_LAG_BUDGET_S = 0.05


def render_directly(renderer, request: GenerationRequest):
    """Plain diffusers usage: the loaded pipeline, the sampler's scheduler, a seeded CPU generator."""
    loaded = renderer.loaded
    pipe = loaded.txt2img
    pipe.scheduler = make_scheduler(
        request.sampler, loaded.scheduler_config, seed=request.seed or 0, table=loaded.family.samplers
    )
    images = []
    for seed in request.image_seeds():
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            width=request.width,
            height=request.height,
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(seed),
        )
        images.extend(output.images)
    return images


async def render_through_service(service: GenerationService, request: GenerationRequest):
    job = service.submit(request, owner="bench")
    steps: list[Progress] = []
    job.add_progress_listener(steps.append)
    result = await job.result()
    return [image.image for image in result.images], len(steps)


async def measure_loop_lag(stop: asyncio.Event, lags: list[float], interval: float = 0.005) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(time.perf_counter() - before - interval)


async def run(args: argparse.Namespace) -> None:
    from generation.renderer import Renderer

    renderer = Renderer(args.model, device=args.device, cpu_threads=args.threads)
    service = GenerationService(renderer, Limits(models=(renderer.default_model,)))
    await service.start()
    try:
        load_s = await service.load_model(renderer.default_model)
        if args.threads is not None and renderer.device.type == "cpu":
            torch.set_num_threads(args.threads)  # the direct side runs on this thread
        request = service.prepare(
            GenerationRequest(
                args.prompt,
                width=args.size,
                height=args.size,
                num_inference_steps=args.steps,
                count=args.count,
                sampler=args.sampler,
                seed=1234,
            )
        )
        print(
            f"device={renderer.device} dtype={renderer.dtype} threads={torch.get_num_threads()} "
            f"model={renderer.default_model} (loaded in {load_s:.2f}s)"
        )
        print(
            f"request: {request.width}x{request.height}, {request.num_inference_steps} steps, "
            f"{request.sampler}, count={request.count}, {args.runs} timed runs per side (+1 warm-up)"
        )

        direct_images = render_directly(renderer, request)  # warm-up both paths
        service_images, _ = await render_through_service(service, request)
        same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(direct_images, service_images))

        direct_s: list[float] = []
        service_s: list[float] = []
        progress_events = 0
        for run_index in range(args.runs):
            order = ("direct", "service") if run_index % 2 == 0 else ("service", "direct")
            for side in order:
                started = time.perf_counter()
                if side == "direct":
                    render_directly(renderer, request)
                    direct_s.append(time.perf_counter() - started)
                else:
                    _, progress_events = await render_through_service(service, request)
                    service_s.append(time.perf_counter() - started)

        # Loop lag is measured on separate renders: the ticker itself costs CPU and would skew the timing.
        lags: list[float] = []
        for _ in range(args.lag_runs):
            stop = asyncio.Event()
            ticker = asyncio.create_task(measure_loop_lag(stop, lags))
            await render_through_service(service, request)
            stop.set()
            await ticker
    finally:
        await service.close()

    def describe(values: list[float]) -> str:
        return (
            f"median {statistics.median(values):.4f}s  mean {statistics.mean(values):.4f}s  "
            f"min {min(values):.4f}s  max {max(values):.4f}s"
        )

    print(f"direct pipeline : {describe(direct_s)}")
    print(f"through service : {describe(service_s)}  ({progress_events} progress events per render)")
    for name, pick in (("median", statistics.median), ("mean", statistics.mean), ("min", min)):
        overhead = (pick(service_s) / pick(direct_s) - 1) * 100
        print(f"service overhead ({name}): {overhead:+.2f}%")
    # Each run renders both sides back to back, so the ratio within a run cancels slow drifts in load.
    paired = statistics.median(service / direct for service, direct in zip(service_s, direct_s))
    print(f"service overhead (median of per-run ratios): {(paired - 1) * 100:+.2f}%")
    if lags:
        worst = max(lags)
        verdict = "within" if worst < LOOP_LAG_BUDGET_S else "OVER"
        print(
            f"event-loop lag while rendering: max {worst * 1000:.1f} ms, "
            f"median {statistics.median(lags) * 1000:.2f} ms over {len(lags)} ticks "
            f"({verdict} the {LOOP_LAG_BUDGET_S * 1000:.0f} ms budget)"
        )
    else:
        print("event-loop lag while rendering: not measured (--lag-runs 0)")
    print(f"identical pixels direct vs service: {'yes' if same else 'NO'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generation_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed renders per side")
    parser.add_argument("--lag-runs", type=int, default=3, help="extra service renders that measure loop lag")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--sampler", default="DPM++ 2M")
    parser.add_argument("--prompt", default="a red circle on a blue background")
    parser.add_argument("--model", default="tinyshapes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads for both sides")
    args = parser.parse_args(argv)

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
