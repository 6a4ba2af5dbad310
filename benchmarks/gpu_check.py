"""GPU readiness check: full-size SDXL and Flux.1-dev with random weights, rendered through the service.

    python -m benchmarks.gpu_check                     # CUDA, SDXL fp16 + Flux bf16, native 1024x1024
    python -m benchmarks.gpu_check --flux-blocks 8     # a shorter Flux transformer when time is short
    python -m benchmarks.gpu_check --offload model     # the OFFLOAD path
    python -m benchmarks.gpu_check --device cpu --toy  # the same code at toy scale (what the tests run)

No download: the component configs below are the published ones (stabilityai/stable-diffusion-xl-base-1.0,
black-forest-labs/FLUX.1-dev), the weights are random and built directly on the device, and the
tokenizers are written locally (generation.local_tokenizers; token ids fit the real vocabularies). A
config-only folder (model_index.json, configs, tokenizers) is written to a temporary directory so the
renderer reads the family, native size and tokenizer the same way as for a real model; the built
pipeline is then adopted by the renderer (Renderer.adopt) and requests go through GenerationService.

Prints, per model: build ("load") time, seconds per image (the second render: the first one warms
up kernels), peak GPU memory, and whether the denoiser or the VAE decoder produced NaN/inf in the
chosen dtype. Expected on one H200: well under 6 minutes in all (most of it building Flux's 12B
and T5-XXL's 4.7B random weights). Random weights draw noise, not pictures: this checks memory,
speed and numerics, not quality.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "center_input_sample": False, "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816, "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True,
}
SDXL_VAE: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 1024, "scaling_factor": 0.13025, "up_block_types": ["UpDecoderBlock2D"] * 4, "force_upcast": True,
}
SDXL_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1,
    "timestep_spacing": "leading", "interpolation_type": "linear", "use_karras_sigmas": False,
    "num_train_timesteps": 1000, "prediction_type": "epsilon",
}
CLIP_L: dict[str, Any] = {  # openai/clip-vit-large-patch14 text tower (SDXL text_encoder, Flux text_encoder)
    "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
    "max_position_embeddings": 77, "vocab_size": 49408, "projection_dim": 768, "hidden_act": "quick_gelu",
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "layer_norm_eps": 1e-05,
}
CLIP_BIG_G: dict[str, Any] = {  # laion OpenCLIP ViT-bigG text tower (SDXL text_encoder_2)
    "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
    "max_position_embeddings": 77, "vocab_size": 49408, "projection_dim": 1280, "hidden_act": "gelu",
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "layer_norm_eps": 1e-05,
}
FLUX_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
    "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768, "guidance_embeds": True,
    "axes_dims_rope": [16, 56, 56],
}
FLUX_VAE: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 16, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 1024, "scaling_factor": 0.3611, "shift_factor": 0.1159, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_quant_conv": False, "use_post_quant_conv": False, "force_upcast": True,
}
FLUX_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15, "shift": 3.0,
    "use_dynamic_shifting": True, "num_train_timesteps": 1000,
}
T5_XXL: dict[str, Any] = {  # google/t5-v1_1-xxl encoder (Flux text_encoder_2)
    "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-06, "dropout_rate": 0.0, "pad_token_id": 0, "eos_token_id": 1,
    "decoder_start_token_id": 0,
}

# --toy: the same structure at a size a CPU renders in a second (what the test suite runs).
TOY = {
    "sdxl_unet": {**SDXL_UNET, "block_out_channels": [32, 64, 64], "attention_head_dim": [2, 4, 4],
                  "transformer_layers_per_block": [1, 1, 1], "layers_per_block": 1, "cross_attention_dim": 64,
                  "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 80, "norm_num_groups": 8,
                  "sample_size": 8},
    "vae": {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 64},
    "clip": {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
             "vocab_size": 600, "projection_dim": 32},
    "flux": {"num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2,
             "joint_attention_dim": 32, "pooled_projection_dim": 32, "axes_dims_rope": [4, 4, 8]},
    "t5": {"d_model": 32, "d_ff": 37, "d_kv": 8, "num_heads": 4, "num_layers": 2, "vocab_size": 128},
}


def _on(device: Any, build: Any, dtype: Any) -> Any:
    """Build a module with random weights directly on `device`, then cast it (one module at a time keeps
    the fp32 peak to the largest single module)."""
    import torch

    with torch.device(device):
        module = build()
    return module.to(dtype)


def build_sdxl(device: Any, dtype: Any, toy: bool) -> Any:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from generation.local_tokenizers import clip_tokenizer

    unet_config = TOY["sdxl_unet"] if toy else SDXL_UNET
    vae_config = {**SDXL_VAE, **(TOY["vae"] if toy else {})}
    clip_l = CLIPTextConfig(**{**CLIP_L, **(TOY["clip"] if toy else {})})
    clip_g = CLIPTextConfig(**{**CLIP_BIG_G, **(TOY["clip"] if toy else {})})
    return StableDiffusionXLPipeline(
        unet=_on(device, lambda: UNet2DConditionModel(**unet_config), dtype),
        vae=_on(device, lambda: AutoencoderKL(**vae_config), dtype),
        text_encoder=_on(device, lambda: CLIPTextModel(clip_l), dtype),
        text_encoder_2=_on(device, lambda: CLIPTextModelWithProjection(clip_g), dtype),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
    )


def build_flux(device: Any, dtype: Any, toy: bool, blocks: int | None = None) -> Any:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from generation.local_tokenizers import clip_tokenizer, t5_tokenizer

    transformer_config = {**FLUX_TRANSFORMER, **(TOY["flux"] if toy else {})}
    if blocks is not None:  # fewer blocks, same shapes: for a machine short on time
        transformer_config.update(num_layers=min(blocks, 19), num_single_layers=min(2 * blocks, 38))
    vae_config = {**FLUX_VAE, **(TOY["vae"] if toy else {})}
    clip_l = CLIPTextConfig(**{**CLIP_L, **(TOY["clip"] if toy else {})})
    t5 = T5Config(**{**T5_XXL, **(TOY["t5"] if toy else {})})
    return FluxPipeline(
        transformer=_on(device, lambda: FluxTransformer2DModel(**transformer_config), dtype),
        vae=_on(device, lambda: AutoencoderKL(**vae_config), dtype),
        text_encoder=_on(device, lambda: CLIPTextModel(clip_l), dtype),
        text_encoder_2=_on(device, lambda: T5EncoderModel(t5), dtype),
        tokenizer=clip_tokenizer(),
        tokenizer_2=t5_tokenizer(max_length=512),
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
    )


def write_config_folder(pipe: Any, folder: Path) -> Path:
    """model_index.json, every component's config and the tokenizers, without weights."""
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_config(folder)
    for name, component in pipe.components.items():
        if component is None:
            continue
        target = folder / name
        if hasattr(component, "save_config"):  # diffusers models and schedulers
            component.save_config(target)
        elif hasattr(component, "tokenize"):  # tokenizers
            component.save_pretrained(target)
        elif hasattr(component, "config"):  # transformers models
            target.mkdir(parents=True, exist_ok=True)
            component.config.save_pretrained(target)
    return folder


class NanWatch:
    """Forward hooks that note NaN/inf in the denoiser's output and the VAE decoder's output."""

    def __init__(self, pipe: Any):
        self.found: dict[str, bool] = {}
        self.handles = []
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        for name, module in (("denoiser", denoiser), ("vae_decoder", pipe.vae.decoder)):
            self.found[name] = False
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        import torch

        def check(module: Any, inputs: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", output)
            if isinstance(tensor, torch.Tensor) and not torch.isfinite(tensor).all():
                self.found[name] = True

        return check

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


async def _render_twice(renderer: Any, name: str, size: int, steps: int) -> list[Any]:
    from generation import GenerationRequest, GenerationService, Limits

    service = GenerationService(renderer, Limits(models=(name,), max_size=max(size, 64), max_pixels=size * size,
                                                 max_steps=max(steps, 1)))
    await service.start()
    results = []
    try:
        for seed in (1, 2):  # the first warms up (kernel selection, allocator)
            defaults = renderer.defaults(name)
            request = GenerationRequest(
                "a red circle on a blue background", model=name, seed=seed, width=size, height=size,
                num_inference_steps=steps, guidance_scale=defaults["guidance_scale"], sampler=defaults["sampler"],
            )
            results.append(await service.submit(service.prepare(request), owner="gpu-check").result())
    finally:
        await service.close()
    return results


def check_model(name: str, build: Any, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import torch

    from generation.families import FAMILIES
    from generation.models import ModelSpec
    from generation.renderer import Renderer, free_memory, pick_device, pick_dtype

    device = pick_device(args.device)
    family = FAMILIES[name]
    dtype = pick_dtype(args.dtype, device, family)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe = build(torch.device("cpu") if args.offload != "none" else device, dtype)
    build_s = time.perf_counter() - started
    size = 64 if args.toy else 1024
    folder = write_config_folder(pipe, workdir / name)
    renderer = Renderer(ModelSpec(name, str(folder), size=size), device=device, offload=args.offload,
                        cpu_threads=args.threads)
    adopt_s = renderer.adopt(name, pipe)
    watch = NanWatch(pipe)
    try:
        first, second = asyncio.run(_render_twice(renderer, name, size, args.steps))
    finally:
        watch.close()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    line = {
        "model": name,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "offload": args.offload,
        "size": f"{size}x{size}",
        "steps": args.steps,
        "load_s": round(build_s + adopt_s, 1),
        "first_image_s": round(first.duration_s, 2),
        "s_per_image": round(second.duration_s, 2),
        "peak_gpu_gib": None if peak is None else round(peak, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1),
        "nan": any(watch.found.values()),
        "nan_in": [part for part, bad in watch.found.items() if bad],
    }
    renderer.unload()
    del pipe, renderer
    free_memory()
    return line


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="auto", help="auto: SDXL fp16, Flux bf16")
    parser.add_argument("--offload", default="none", choices=("none", "model", "sequential"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--flux-blocks", type=int, help="double blocks (single = 2x); default: all 19/38")
    parser.add_argument("--models", default="sdxl,flux")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--toy", action="store_true", help="toy-sized configs (CPU tests)")
    args = parser.parse_args(argv)

    builders = {
        "sdxl": lambda device, dtype: build_sdxl(device, dtype, args.toy),
        "flux": lambda device, dtype: build_flux(device, dtype, args.toy, args.flux_blocks),
    }
    report = []
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as workdir:
        for name in args.models.split(","):
            line = check_model(name, builders[name], args, Path(workdir))
            print(json.dumps(line), flush=True)
            report.append(line)
    print(f"total {time.perf_counter() - total:.0f}s", file=sys.stderr)
    return report


if __name__ == "__main__":
    results = main()
    sys.exit(1 if any(line["nan"] for line in results) else 0)
