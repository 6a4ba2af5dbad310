"""Render without Discord, through the same service the bot uses.

    python -m generation "a red circle on a blue background" --seed 7 --steps 20 -o out.png
    python -m generation "a red circle" --model path/to/sdxl-folder --seed 3 -o out.png

Inline flags work here too ("a red circle --ar 2:1 --no blue"); they win over the options below.
Steps, guidance and sampler default to the model's own (its family's, or its entry in --models-file).
With --count > 1 the images are written as out-1.png, out-2.png, ...; each image's seed is printed
so it can be rendered again alone with --seed. Every PNG carries A1111's `parameters` text.

Everything that can be checked without torch (the model path, the init image, every value) is
checked first, so a mistake is reported at once instead of after torch has loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from . import GenerationRequest, GenerationService, JobFailed, Limits, RequestError, apply_prompt_flags
from .console import silence_torchvision_fallback, step_printer
from .cpu_threads import default_cpu_threads
from .edit_families import picture_size
from .families import ModelInfo, read_model_info
from .loras import LoraLibrary
from .metadata import rendered_png
from .models import ModelSource, check_source, hub_offline, hub_reachable, model_source
from .models_file import ModelConfigError, load_model_specs
from .prompts import split_prompt
from .references import IpAdapters, check_references
from .samplers import SAMPLERS
from .validation import validate_request

# The CLI is the operator's own machine: roomier than the bot's defaults.
CLI_LIMITS = dict(max_size=2048, max_pixels=2048 * 2048, max_steps=150, max_count=8)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m generation", description=__doc__.split("\n\n")[0], epilog=f"Samplers: {', '.join(SAMPLERS)}"
    )
    parser.add_argument("prompt", help="what to draw; may contain inline flags like --ar 2:1")
    parser.add_argument("-o", "--output", default="out.png", help="output PNG path (default: out.png)")
    parser.add_argument("--negative-prompt", "--no", help="what to avoid (default: the model's, usually none)")
    parser.add_argument("--width", type=int, help="pixels, a multiple of 8 (default: the model's native size)")
    parser.add_argument("--height", type=int, help="pixels, a multiple of 8 (default: the model's native size)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--cfg", type=float, help="guidance scale, 0-30 (default: the model's)")
    parser.add_argument("--seed", type=int, help="0..2**32-1 (default: random, printed)")
    parser.add_argument("--sampler", help="default: the model's (e.g. DPM++ 2M for SD, Euler for SD3 and Flux)")
    parser.add_argument("--count", type=int, default=1, help="images, 1-8 (seeds seed, seed+1, ...)")
    parser.add_argument("--init-image", type=Path, help="PNG/JPEG to start from (image-to-image)")
    parser.add_argument("--strength", type=float, default=0.75, help="image-to-image: 0 keeps the image, 1 ignores it")
    parser.add_argument("--sref", type=Path, help="style reference picture (PNG/JPEG; generation.references)")
    parser.add_argument("--sw", type=int, help="style weight, 0-1000 (default 100)")
    parser.add_argument("--oref", type=Path, help="object reference picture (PNG/JPEG)")
    parser.add_argument("--ow", type=int, help="object weight, 0-1000 (default 100)")
    parser.add_argument("--ip-adapter-dir", default=None,
                        help="folder of IP-Adapter weights for --sref/--oref on SD 1.x/SDXL (the bot's IP_ADAPTER_DIR)")
    parser.add_argument("--variation-seed", type=int, help="seed to blend towards (default: random if strength > 0)")
    parser.add_argument("--variation-strength", type=float, default=0.0, help="0-1")
    parser.add_argument(
        "--model", default="tinyshapes",
        help="tinyshapes, a diffusers folder, a hub id, a .safetensors/.ckpt file, or a name from --models-file",
    )
    parser.add_argument("--model-config", help="diffusers folder with the configs of a single-file checkpoint")
    parser.add_argument(
        "--models-file", default=None,
        help="TOML file of configured models (the bot's MODELS_FILE)",
    )
    parser.add_argument(
        "--lora-dir", default=None,
        help="folder of LoRA .safetensors files for <lora:name:0.8> in the prompt (the bot's LORA_DIR)",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA, bf16 for SD3/Flux), float32, float16, bfloat16")
    parser.add_argument("--offload", default="none", choices=("none", "model", "sequential"),
                        help="CUDA: move weights to the GPU only while used (model) or layer by layer (sequential)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 for the shipped model, as the bot; else torch's default)")
    return parser


def output_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{index}{output.suffix}") for index in range(1, count + 1)]


@dataclass
class Plan:
    source: ModelSource
    info: ModelInfo
    request: GenerationRequest
    limits: Limits


def resolve_source(args: argparse.Namespace) -> ModelSource:
    specs = load_model_specs(args.models_file) if args.models_file else {}
    source: ModelSource = specs.get(args.model) or model_source(args.model)
    if args.model_config:
        source = dataclasses.replace(source, config=args.model_config)
    return source


def plan_render(args: argparse.Namespace) -> Plan:
    """Everything that needs no torch: the model's files, its family, the request and its checks."""
    source = resolve_source(args)
    if check_source(source, probe_network=True) == "hub" and not hub_offline() and not hub_reachable():
        _go_offline()  # cached, but the hub is unreachable: never wait on retries
    info = read_model_info(source)
    defaults = info.defaults()
    defaults.update(getattr(source, "request_defaults", dict)())
    init_image, sref_image, oref_image = (_read_picture(flag, path) for flag, path in (
        ("--init-image", args.init_image), ("--sref", args.sref), ("--oref", args.oref)))
    width, height = args.width, args.height
    if init_image is not None and info.family.edits_by_instruction and width is None and height is None:
        width, height = picture_size(init_image, info.family.size_multiple)  # an instruction edit keeps the size
    request = GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt if args.negative_prompt is not None else defaults.get("negative_prompt", ""),
        width=width,
        height=height,
        num_inference_steps=args.steps if args.steps is not None else defaults["num_inference_steps"],
        guidance_scale=args.cfg if args.cfg is not None else defaults["guidance_scale"],
        seed=args.seed,
        sampler=args.sampler if args.sampler is not None else defaults["sampler"],
        count=args.count,
        init_image=init_image,
        strength=args.strength,
        variation_seed=args.variation_seed,
        variation_strength=args.variation_strength,
        model=source.name,
        sref_image=sref_image,
        sref_weight=args.sw,
        oref_image=oref_image,
        oref_weight=args.ow,
    )
    request = apply_prompt_flags(request, base_size=info.native_size)
    limits = Limits(models=(source.name,), **CLI_LIMITS)
    validate_request(request, limits)
    info.family.check_request(request, info)
    loras = LoraLibrary(args.lora_dir)
    for tag in split_prompt(request.prompt).loras:
        loras.check_fits(tag.name, info)
    check_references(request, info, IpAdapters(args.ip_adapter_dir), source)
    return Plan(source, info, request, limits)


def _read_picture(flag: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RequestError(f"{flag} {path}: no such file.") from None
    except OSError as error:
        raise RequestError(f"{flag} {path} could not be read ({error.strerror}).") from None


def _go_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover
        pass


async def render(args: argparse.Namespace, plan: Plan) -> int:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    silence_torchvision_fallback()
    from .renderer import Renderer  # imports torch: only once we know the arguments are sane

    diffusers_logging.disable_progress_bar()  # our own step counter is enough
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()

    # The bot's thread default (one thread for the shipped model) unless --threads says otherwise.
    threads = args.threads if args.threads is not None else default_cpu_threads([plan.source])
    renderer = Renderer(plan.source, device=args.device, dtype=args.dtype, cpu_threads=threads,
                        offload=args.offload, lora_dir=args.lora_dir, ip_adapter_dir=args.ip_adapter_dir)
    service = GenerationService(renderer, plan.limits)
    await service.start()
    show_step = step_printer(sys.stderr)
    try:
        job = service.submit(service.prepare(plan.request), owner="cli")
        if show_step is not None:
            job.add_progress_listener(show_step)
        result = await job.result()
    finally:
        await service.close()
    if show_step is not None:
        print(file=sys.stderr)  # end the redrawn step line
    paths = output_paths(Path(args.output), len(result.images))
    for path, rendered in zip(paths, result.images):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered_png(result.request, rendered, renderer.lora_hashes(result.request.prompt)))
        variation = (
            f" variation_seed={rendered.variation_seed} variation_strength={rendered.variation_strength}"
            if rendered.variation_seed is not None
            else ""
        )
        print(f"{path} seed={rendered.seed}{variation}")
    prepared = result.request
    print(
        f"{prepared.width}x{prepared.height}, {prepared.num_inference_steps} steps, {prepared.sampler} "
        f"({plan.info.family.title}): rendered in {result.duration_s:.2f}s on {renderer.device}{cpu_threads_text()}"
        + (f" (model loaded in {result.model_load_s:.2f}s)" if result.model_load_s else ""),
        file=sys.stderr,
    )
    return 0


def cpu_threads_text() -> str:
    """", 1 thread" on the CPU (the figure a slow render is first checked against); "" on a GPU."""
    import torch

    if torch.cuda.is_available():
        return ""
    threads = torch.get_num_threads()
    return f", {threads} thread{'s' if threads != 1 else ''}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = plan_render(args)
        return asyncio.run(render(args, plan))
    except (RequestError, ModelConfigError, JobFailed) as error:
        print(f"error: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
