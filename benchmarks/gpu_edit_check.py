"""GPU readiness of the instruction-edit families: FLUX.1 Kontext, FLUX.2 [klein] 4B and Qwen-Image-Edit Plus
at full size with random weights, each edit rendered through the renderer (Renderer.adopt + render).

    python benchmarks/gpu_edit_check.py                      # CUDA bf16, 1024x1024, all three
    python benchmarks/gpu_edit_check.py --families klein     # one family
    python benchmarks/gpu_edit_check.py --tiny --device cpu  # the same code with tiny configs (a CPU test)

No download and no hub: the component configs below are the published ones (black-forest-labs/FLUX.1-Kontext-dev
= FLUX.1-dev's transformer, FLUX.2-klein-4B with Qwen3-4B, Qwen/Qwen-Image-Edit-2509 with Qwen2.5-VL-7B), the
weights are random and built on the device, the tokenizers and the Qwen2-VL processor are written locally
(generation.local_tokenizers, generation.local_qwen: their ids fit the real vocabularies). Needs torch,
diffusers, transformers and this repository's generation package only.

Per family it prints: build time, seconds per denoising step (a render of --steps steps after a two-step
warm-up, divided by the steps: it includes encoding the words and pictures and decoding) and the seconds per image that gives at the family's default steps, peak GPU memory, and whether
the transformer or the VAE decoder produced NaN/inf. Everything fits one 141 GB H200 in bf16 (Qwen-Image-Edit:
20B transformer + 7B VL encoder, ~58 GB of weights); on one H200 the three take about 3–4 minutes, most of it
building random weights. Random weights draw noise, not pictures: this checks memory, speed and numerics.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.gpu_check import NanWatch  # noqa: E402

FLUX1_TRANSFORMER: dict[str, Any] = {  # FLUX.1-dev = FLUX.1 Kontext [dev]
    "attention_head_dim": 128, "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096,
    "num_attention_heads": 24, "num_layers": 19, "num_single_layers": 38, "patch_size": 1,
    "pooled_projection_dim": 768, "axes_dims_rope": [16, 56, 56],
}
FLUX1_VAE: dict[str, Any] = {
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3, "latent_channels": 16,
    "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 1024, "scaling_factor": 0.3611,
    "shift_factor": 0.1159, "use_quant_conv": False, "use_post_quant_conv": False,
}
FLUX_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15, "shift": 3.0,
    "use_dynamic_shifting": True,
}
CLIP_L: dict[str, Any] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
    "max_position_embeddings": 77, "vocab_size": 49408, "projection_dim": 768, "hidden_act": "quick_gelu",
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "layer_norm_eps": 1e-05,
}
T5_XXL: dict[str, Any] = {
    "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1,
}
KLEIN_TRANSFORMER: dict[str, Any] = {  # FLUX.2 [klein] 4B: 5 double + 20 single blocks, 3072 wide
    "patch_size": 1, "in_channels": 128, "num_layers": 5, "num_single_layers": 20, "attention_head_dim": 128,
    "num_attention_heads": 24, "joint_attention_dim": 7680, "timestep_guidance_channels": 256, "mlp_ratio": 3.0,
    "axes_dims_rope": [32, 32, 32, 32], "rope_theta": 2000, "eps": 1e-06, "guidance_embeds": False,
}
FLUX2_VAE: dict[str, Any] = {"latent_channels": 32, "block_out_channels": [128, 256, 512, 512]}
KLEIN_SCHEDULER: dict[str, Any] = {**FLUX_SCHEDULER, "time_shift_type": "exponential"}
QWEN3_4B: dict[str, Any] = {
    "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 40960,
    "rope_theta": 1000000, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
}
QWEN_IMAGE_TRANSFORMER: dict[str, Any] = {
    "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 60, "attention_head_dim": 128,
    "num_attention_heads": 24, "joint_attention_dim": 3584, "guidance_embeds": False, "axes_dims_rope": [16, 56, 56],
}
QWEN_VAE: dict[str, Any] = {}  # AutoencoderKLQwenImage's defaults are Qwen-Image's VAE
QWEN_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 8192, "max_shift": 0.9, "shift": 1.0,
    "shift_terminal": 0.02, "use_dynamic_shifting": True, "time_shift_type": "exponential",
}
QWEN25_VL_7B: dict[str, Any] = {
    "text_config": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 128000, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06, "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
    },
    "vision_config": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "in_chans": 3, "tokens_per_second": 2,
    },
    "hidden_size": 3584, "vocab_size": 152064,
}
# The same code at toy scale (--tiny): what the CPU test runs.
TINY: dict[str, dict[str, Any]] = {
    "flux1": {"num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2,
              "joint_attention_dim": 32, "pooled_projection_dim": 32, "axes_dims_rope": [4, 4, 8]},
    "vae": {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4},
    "clip": {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
             "projection_dim": 32, "vocab_size": 600},
    "t5": {"d_model": 32, "d_ff": 37, "d_kv": 8, "num_heads": 4, "num_layers": 2, "vocab_size": 128},
    "klein": {"in_channels": 16, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2,
              "joint_attention_dim": 48, "axes_dims_rope": [4, 4, 4, 4]},
    "flux2_vae": {"latent_channels": 4, "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1,
                  "norm_num_groups": 4},
    "qwen3": {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 28, "num_attention_heads": 2,
              "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 300},
    "qwen_transformer": {"num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 3, "joint_attention_dim": 16,
                         "axes_dims_rope": [8, 4, 4]},
    "qwen_vae": {"base_dim": 8, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1,
                 "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16},
    "qwen_vl": {"text_config": {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
                                "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 300,
                                "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
                "vision_config": {"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                                  "out_hidden_size": 16, "fullatt_block_indexes": [1]},
                "hidden_size": 16, "vocab_size": 300},
}
FAMILY_NAMES = ("klein", "kontext", "qwen-edit")


def _on(device: Any, build: Any, dtype: Any) -> Any:
    """Random weights built directly on `device`, then cast (one module at a time: a small fp32 peak)."""
    import torch

    with torch.device(device):
        module = build()
    return module.to(dtype)


def _merge(base: dict[str, Any], tiny: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (tiny or {}).items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def build_kontext(device: Any, dtype: Any, tiny: bool) -> Any:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from generation.local_tokenizers import clip_tokenizer, t5_tokenizer

    pick = (lambda key: TINY[key]) if tiny else (lambda key: None)
    return FluxKontextPipeline(
        transformer=_on(device, lambda: FluxTransformer2DModel(**_merge(FLUX1_TRANSFORMER, pick("flux1"))), dtype),
        vae=_on(device, lambda: AutoencoderKL(**_merge(FLUX1_VAE, pick("vae"))), dtype),
        text_encoder=_on(device, lambda: CLIPTextModel(CLIPTextConfig(**_merge(CLIP_L, pick("clip")))), dtype),
        text_encoder_2=_on(device, lambda: T5EncoderModel(T5Config(**_merge(T5_XXL, pick("t5")))), dtype),
        tokenizer=clip_tokenizer(), tokenizer_2=t5_tokenizer(max_length=512),
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
    )


def build_klein(device: Any, dtype: Any, tiny: bool) -> Any:
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from generation.local_qwen import qwen_tokenizer

    pick = (lambda key: TINY[key]) if tiny else (lambda key: None)
    pipe = Flux2KleinPipeline(
        transformer=_on(device, lambda: Flux2Transformer2DModel(**_merge(KLEIN_TRANSFORMER, pick("klein"))), dtype),
        vae=_on(device, lambda: AutoencoderKLFlux2(**_merge(FLUX2_VAE, pick("flux2_vae"))), dtype),
        text_encoder=_on(device, lambda: Qwen3ForCausalLM(Qwen3Config(**_merge(QWEN3_4B, pick("qwen3")))), dtype),
        tokenizer=qwen_tokenizer(), scheduler=FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER),
        is_distilled=True,
    )
    return pipe


def build_qwen_edit(device: Any, dtype: Any, tiny: bool) -> Any:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from generation.local_qwen import allow_processor_without_video, qwen_tokenizer, qwen_vl_processor, special_ids

    pick = (lambda key: TINY[key]) if tiny else (lambda key: None)
    ids = special_ids()  # the local tokenizer's ids for the vision tokens
    vl = Qwen2_5_VLConfig(**_merge(QWEN25_VL_7B, pick("qwen_vl")), image_token_id=ids["<|image_pad|>"],
                          video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                          vision_end_token_id=ids["<|vision_end|>"])
    allow_processor_without_video()
    return QwenImageEditPlusPipeline(
        transformer=_on(device, lambda: QwenImageTransformer2DModel(
            **_merge(QWEN_IMAGE_TRANSFORMER, pick("qwen_transformer"))), dtype),
        vae=_on(device, lambda: AutoencoderKLQwenImage(**_merge(QWEN_VAE, pick("qwen_vae"))), dtype),
        text_encoder=_on(device, lambda: Qwen2_5_VLForConditionalGeneration(vl), dtype),
        tokenizer=qwen_tokenizer(), processor=qwen_vl_processor(max_pixels=56 * 56 if tiny else 1024 * 1024),
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_SCHEDULER),
    )


BUILDERS = {"kontext": build_kontext, "klein": build_klein, "qwen-edit": build_qwen_edit}


def write_config_folder(pipe: Any, folder: Path) -> Path:
    """model_index.json and the configs the renderer reads for the family and the native size (no weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": type(pipe).__name__}
    for name in ("transformer", "vae", "scheduler"):
        component = getattr(pipe, name)
        index[name] = ["diffusers", type(component).__name__]
        component.save_config(folder / name)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def _picture(size: int) -> bytes:
    import numpy as np
    import PIL.Image

    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, : size // 2] = (200, 40, 40)
    pixels[:, size // 2:] = (40, 40, 200)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def check_family(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import torch

    from generation.renderer import Renderer, free_memory, pick_device
    from generation.request import GenerationRequest

    device = pick_device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe = BUILDERS[name](device, dtype, args.tiny)
    build_s = time.perf_counter() - started
    folder = write_config_folder(pipe, workdir / name)
    renderer = Renderer(str(folder), device=device, cpu_threads=args.threads)
    model = str(folder)
    renderer.adopt(model, pipe)
    info = renderer.model_info(model)
    defaults = info.defaults()
    size = args.size or (64 if args.tiny else 1024)
    picture = _picture(size)
    # An edit plus one reference where the model takes several pictures (klein, Qwen-Image-Edit Plus).
    request = GenerationRequest("make the left half green", width=size, height=size, seed=0, sampler="Euler",
                                guidance_scale=defaults["guidance_scale"], num_inference_steps=2, model=model,
                                init_image=picture, sref_image=picture if name != "kontext" else None)
    renderer.check_request(request)
    watch = NanWatch(pipe)
    renderer.render(request)  # warm-up (2 steps: Qwen's terminal shift divides by zero at 1): kernels, allocator
    steps = args.steps
    timed = renderer.render(request.replace(num_inference_steps=steps, seed=1))
    watch.close()
    per_step = timed.duration_s / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    row = {
        "family": info.family.title, "pipeline": type(pipe).__name__, "size": f"{size}x{size}",
        "build_s": round(build_s, 1), "s_per_step": round(per_step, 3),
        "default_steps": defaults["num_inference_steps"],
        "s_per_image_at_default_steps": round(per_step * defaults["num_inference_steps"], 1),
        "peak_gb": None if peak is None else round(peak, 1), "nan": watch.found,
        "output": "x".join(map(str, timed.images[0].image.size)),
    }
    print(json.dumps(row), flush=True)
    renderer.unload()
    del pipe, renderer
    free_memory()
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILY_NAMES), help=f"comma-separated: {', '.join(FAMILY_NAMES)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=None, help="square side (default 1024; 64 with --tiny)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps timed (after a one-step warm-up)")
    parser.add_argument("--tiny", action="store_true", help="tiny configs: the same code on a CPU in seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = sorted(set(names) - set(FAMILY_NAMES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILY_NAMES)}")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            rows.append(check_family(name, args, Path(workdir)))
    failed = [row["family"] for row in rows if any(row["nan"].values())]
    print("NaN/inf in: " + ", ".join(failed) if failed else "no NaN/inf", flush=True)
    return rows


if __name__ == "__main__":
    main()
