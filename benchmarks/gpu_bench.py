"""GPU throughput benchmark (a machine with CUDA, not CI): images/s of SD 1.5 at 512² and SDXL at 1024².

    python -m benchmarks.gpu_bench                      # both models, fp16, BATCH_IMAGES=auto, eager
    python -m benchmarks.gpu_bench --compile            # TORCH_COMPILE: regional compile, warmed first
    python -m benchmarks.gpu_bench --models sd15 --batch-images 8 --peak-tflops 989

Full-size architectures with random weights built directly on the GPU from their published configs (no
download; compute is the same as with real weights). Per model, in one process:

- plain diffusers, one image per call (`pipe(prompt, generator=...)`, SDPA, fp16);
- plain diffusers at the batch size the service chose (prompt lists, one CPU generator per image);
- the service (GenerationService + Renderer: channels_last, SDPA, per-image CPU noise, progress
  listeners, fair batches) under a burst of 16 jobs from 4 users (16 images), after warm-up bursts
  that let BATCH_IMAGES=auto grow its limit;
- the FLOP floor: FLOPs per image counted with torch.utils.flop_counter (steps x denoiser with CFG +
  VAE decode), divided into --peak-tflops (H200/H100 SXM dense fp16/bf16: 989), and each side's share of it.

Expected to finish in under 8 minutes on one H200 (most of it SDXL at 1024²). Not run in CI; its
figures go into generation/README.md when a GPU is available.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check import CLIP_L, SDXL_SCHEDULER, TOY, _on, build_sdxl, write_config_folder

SD15_UNET: dict[str, Any] = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False, "use_linear_projection": False,
}
SD15_VAE: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215,
}
# (owner, count) of the 16 jobs: 4 users, one image each (16 images).
BURST = [(owner, 1) for owner in ("alice", "bob", "carol", "dave") for _ in range(4)]


SD15_TOY: dict[str, Any] = {"block_out_channels": [32, 64, 64, 64], "attention_head_dim": 2, "layers_per_block": 1,
                            "cross_attention_dim": 32, "norm_num_groups": 8, "sample_size": 8}


def build_sd15(device: Any, dtype: Any, toy: bool = False) -> Any:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from generation.local_tokenizers import clip_tokenizer

    return StableDiffusionPipeline(
        vae=_on(device, lambda: AutoencoderKL(**{**SD15_VAE, **(TOY["vae"] if toy else {})}), dtype),
        text_encoder=_on(device, lambda: CLIPTextModel(CLIPTextConfig(**{**CLIP_L, **(TOY["clip"] if toy else {})})),
                         dtype),
        tokenizer=clip_tokenizer(),
        unet=_on(device, lambda: UNet2DConditionModel(**{**SD15_UNET, **(SD15_TOY if toy else {})}), dtype),
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def flops_per_image(pipe: Any, size: int, steps: int) -> float:
    """steps x one denoiser pass at batch 2 (classifier-free guidance) + one VAE decode, counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device, dtype = pipe.unet.device, pipe.unet.dtype
    latent = size // pipe.vae_scale_factor
    sample = torch.randn(2, 4, latent, latent, device=device, dtype=dtype)
    text = torch.randn(2, 77, pipe.unet.config.cross_attention_dim, device=device, dtype=dtype)
    extra: dict[str, Any] = {}
    if pipe.unet.config.addition_embed_type == "text_time":  # SDXL: pooled text and size ids
        pooled = pipe.unet.config.projection_class_embeddings_input_dim - 6 * pipe.unet.config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {"text_embeds": torch.randn(2, pooled, device=device, dtype=dtype),
                                      "time_ids": torch.randn(2, 6, device=device, dtype=dtype)}
    with torch.no_grad():
        with FlopCounterMode(display=False) as unet_count:
            pipe.unet(sample, 500, encoder_hidden_states=text, **extra)
        with FlopCounterMode(display=False) as vae_count:
            pipe.vae.decode(sample[:1] / pipe.vae.config.scaling_factor)
    return float(steps * unet_count.get_total_flops() + vae_count.get_total_flops())


def burst(name: str, size: int, steps: int, guidance: float, sampler: str) -> list[tuple[str, Any]]:
    from generation import GenerationRequest

    colours, shapes = ["red", "green", "blue", "yellow"], ["circle", "square", "triangle", "star"]
    return [(owner, GenerationRequest(f"a {colours[number % 4]} {shapes[number // 4]} on a grey background",
                                      width=size, height=size, num_inference_steps=steps, guidance_scale=guidance,
                                      sampler=sampler, seed=100 + number, count=count, model=name))
            for number, (owner, count) in enumerate(BURST)]


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def plain(pipe: Any, scheduler_config: Any, jobs: list[tuple[str, Any]], per_call: int) -> int:
    import torch

    from generation.families import FAMILIES
    from generation.samplers import make_scheduler

    images = [(request, seed) for _, request in jobs for seed in request.image_seeds()]
    for start in range(0, len(images), per_call):
        chunk = images[start:start + per_call]
        lead = chunk[0][0]
        pipe.scheduler = make_scheduler(lead.sampler, scheduler_config, seed=chunk[0][1], table=FAMILIES["sd"].samplers)
        generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in chunk]
        pipe(prompt=[request.prompt for request, _ in chunk], width=lead.width, height=lead.height,
             num_inference_steps=lead.num_inference_steps, guidance_scale=lead.guidance_scale,
             generator=generators if len(chunk) > 1 else generators[0])
    synchronize()
    return len(images)


async def through_service(service: Any, jobs: list[tuple[str, Any]]) -> int:
    submitted = []
    for owner, request in jobs:
        job = service.submit(service.prepare(request), owner=owner, enforce_caps=False)
        job.add_progress_listener(lambda progress: None)
        submitted.append(job)
    results = await asyncio.gather(*(job.result() for job in submitted))
    return sum(len(result.images) for result in results)


async def bench_model(name: str, build: Any, size: int, steps: int, args: argparse.Namespace, workdir: Path) -> dict:
    import torch

    from generation import GenerationService, Limits
    from generation.models import ModelSpec
    from generation.renderer import Renderer, free_memory

    started = time.perf_counter()
    device = torch.device(args.device)
    pipe = build(device, torch.float16 if device.type == "cuda" else torch.float32)
    folder = write_config_folder(pipe, workdir / name)
    renderer = Renderer(ModelSpec(name, str(folder), size=size), device=device, compile_denoiser=args.compile)
    renderer.adopt(name, pipe)  # channels_last, SDPA; with --compile a regional compile, warmed here
    build_s = time.perf_counter() - started
    floor_flops = flops_per_image(pipe, size, steps)
    guidance, sampler = 7.0, "DPM++ 2M"
    jobs = burst(name, size, steps, guidance, sampler)
    service = GenerationService(renderer, Limits(models=(name,), max_size=size, max_pixels=size * size,
                                                 max_steps=steps), per_owner_cap=20, total_cap=64,
                                batch_images=args.batch_images)
    await service.start()
    try:
        for _ in range(args.warmup_bursts):  # kernel choice, allocator; auto grows its limit here
            await through_service(service, jobs)
        batch = service.batch_limit.limit(name, size, size)
        config = renderer.loaded.scheduler_config if renderer.loaded is not None else pipe.scheduler.config
        plain(pipe, config, jobs[:1], 1)
        try:
            plain(pipe, config, jobs[:batch], batch)
        except torch.OutOfMemoryError:
            free_memory()
        sides: dict[str, list[float]] = {"plain_1": [], f"plain_{batch}": [], "service": []}
        for _ in range(args.rounds):
            for side in sides:
                began = time.perf_counter()
                if side == "service":
                    count = await through_service(service, jobs)
                    synchronize()
                else:
                    try:
                        count = plain(pipe, config, jobs, 1 if side == "plain_1" else batch)
                    except torch.OutOfMemoryError:  # plain diffusers has no split-and-retry
                        free_memory()
                        print(f"{name}: {side} ran out of GPU memory", flush=True)
                        count = 0
                sides[side].append(count / (time.perf_counter() - began))
    finally:
        await service.close()
    floor = args.peak_tflops * 1e12 / floor_flops
    line: dict[str, Any] = {"model": name, "size": size, "steps": steps, "build_s": round(build_s, 1),
                            "batch": batch, "tflop_per_image": round(floor_flops / 1e12, 2),
                            "floor_images_s": round(floor, 2)}
    for side, values in sides.items():
        rate = statistics.median(values)
        line[f"{side}_images_s"] = round(rate, 2)
        line[f"{side}_share_of_floor"] = f"{rate / floor:.0%}"
    if device.type == "cuda":
        line["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    renderer.unload()
    del pipe
    free_memory()
    return line


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="sd15,sdxl", help="comma-separated: sd15 (512², 25 steps), sdxl (1024², 20 steps)")
    parser.add_argument("--batch-images", default="auto", help="the service's BATCH_IMAGES: auto or a number")
    parser.add_argument("--compile", action="store_true", help="TORCH_COMPILE: regional torch.compile of the denoiser")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup-bursts", type=int, default=3, help="service bursts before timing (auto grows in them)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense fp16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--toy", action="store_true", help="toy-size models at 64² (a dry run of this script on a CPU)")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging

    if not torch.cuda.is_available() and not args.toy:
        raise SystemExit("benchmarks.gpu_bench needs a CUDA GPU (python -m benchmarks.burst_bench is the CPU benchmark)")
    diffusers_logging.disable_progress_bar()
    plans: dict[str, tuple[Any, int, int]] = {
        "sd15": (lambda device, dtype: build_sd15(device, dtype, args.toy), 64 if args.toy else 512, 4 if args.toy else 25),
        "sdxl": (lambda device, dtype: build_sdxl(device, dtype, args.toy), 64 if args.toy else 1024, 4 if args.toy else 20),
    }
    lines = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models.split(","):
            build, size, steps = plans[name.strip()]
            line = asyncio.run(bench_model(name.strip(), build, size, steps, args, Path(workdir)))
            print(line, flush=True)
            lines.append(line)
    return lines


if __name__ == "__main__":
    main()
