"""Render without Discord, through the same service the bot uses.

    python -m generation "a red circle on a blue background" --seed 7 --steps 20 -o out.png

Inline flags work here too ("a red circle --ar 2:1 --no blue"); they win over the options below.
With --count > 1 the images are written as out-1.png, out-2.png, ...; each image's seed is printed
so it can be rendered again alone with --seed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from . import GenerationRequest, GenerationService, JobFailed, Limits, RequestError, apply_prompt_flags
from .models import ModelSource, model_source
from .samplers import SAMPLERS

DEFAULTS = GenerationRequest(prompt="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m generation", description=__doc__.split("\n\n")[0], epilog=f"Samplers: {', '.join(SAMPLERS)}"
    )
    parser.add_argument("prompt", help="what to draw; may contain inline flags like --ar 2:1")
    parser.add_argument("-o", "--output", default="out.png", help="output PNG path (default: out.png)")
    parser.add_argument("--negative-prompt", "--no", default=DEFAULTS.negative_prompt, help="what to avoid")
    parser.add_argument("--width", type=int, help="pixels, a multiple of 8 (default: the model's native size)")
    parser.add_argument("--height", type=int, help="pixels, a multiple of 8 (default: the model's native size)")
    parser.add_argument("--steps", type=int, default=DEFAULTS.num_inference_steps, help="denoising steps")
    parser.add_argument("--cfg", type=float, default=DEFAULTS.guidance_scale, help="guidance scale, 0-30")
    parser.add_argument("--seed", type=int, help="0..2**32-1 (default: random, printed)")
    parser.add_argument("--sampler", default=DEFAULTS.sampler, help=f"default: {DEFAULTS.sampler}")
    parser.add_argument("--count", type=int, default=DEFAULTS.count, help="images, 1-4 (seeds seed, seed+1, ...)")
    parser.add_argument("--init-image", type=Path, help="PNG/JPEG to start from (img2img)")
    parser.add_argument("--strength", type=float, default=DEFAULTS.strength, help="img2img: 0 keeps, 1 ignores it")
    parser.add_argument("--variation-seed", type=int, help="seed to blend towards (default: random if strength > 0)")
    parser.add_argument("--variation-strength", type=float, default=DEFAULTS.variation_strength, help="0-1")
    parser.add_argument(
        "--model", default=DEFAULTS.model, help="tinyshapes, a diffusers folder, a hub id, or a checkpoint"
    )
    parser.add_argument("--model-config", help="diffusers folder with the configs of a single-file checkpoint")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), float32, float16, bfloat16")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy small CPU)")
    return parser


def output_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{index}{output.suffix}") for index in range(1, count + 1)]


async def render(args: argparse.Namespace) -> int:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .renderer import Renderer  # imports torch: only once we know the arguments are sane

    diffusers_logging.disable_progress_bar()  # our own step counter is enough
    transformers_logging.disable_progress_bar()

    source = model_source(args.model)
    if args.model_config:
        source = ModelSource(source.name, source.path, config=args.model_config)
    request = GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        num_inference_steps=args.steps,
        guidance_scale=args.cfg,
        seed=args.seed,
        sampler=args.sampler,
        count=args.count,
        init_image=args.init_image.read_bytes() if args.init_image else None,
        strength=args.strength,
        variation_seed=args.variation_seed,
        variation_strength=args.variation_strength,
        model=source.name,
    )
    renderer = Renderer(source, device=args.device, dtype=args.dtype, cpu_threads=args.threads)
    service = GenerationService(renderer, Limits(models=(source.name,)))
    await service.start()
    try:
        request = apply_prompt_flags(request, base_size=service.native_size(source.name))
        job = service.submit(request, owner="cli")
        job.add_progress_listener(lambda p: print(f"\rstep {p.step}/{p.total}", end="", file=sys.stderr))
        result = await job.result()
    finally:
        await service.close()
    print(file=sys.stderr)
    paths = output_paths(Path(args.output), len(result.images))
    for path, rendered in zip(paths, result.images):
        path.parent.mkdir(parents=True, exist_ok=True)
        rendered.image.save(path)
        variation = (
            f" variation_seed={rendered.variation_seed} variation_strength={rendered.variation_strength}"
            if rendered.variation_seed is not None
            else ""
        )
        print(f"{path} seed={rendered.seed}{variation}")
    prepared = result.request
    print(
        f"{prepared.width}x{prepared.height}, {prepared.num_inference_steps} steps, {prepared.sampler}: "
        f"rendered in {result.duration_s:.2f}s on {renderer.device}"
        + (f" (model loaded in {result.model_load_s:.2f}s)" if result.model_load_s else ""),
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(render(args))
    except (RequestError, JobFailed) as error:
        print(f"error: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
