"""Where a pipeline runs and in what precision: device and dtype choice, placement and offload, CPU threads.

Runs on the render thread (placement, threads) or anywhere (the choices themselves). No diffusers here.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import torch

from .families import Family

log = logging.getLogger(__name__)

OFFLOAD_MODES = ("none", "model", "sequential")
VAE_TILING_MODES = ("auto", "on", "off")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype, device: torch.device, family: Family | None = None) -> torch.dtype:
    """The dtype to load in. "auto": on CUDA the family's (fp16; bf16 for SD3 and Flux where the GPU has
    bf16, else fp16); CPUs and MPS are safest in fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        if family is not None and family.cuda_dtype == "bfloat16" and _cuda_has_bf16():
            return torch.bfloat16
        return torch.float16
    names = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in names:
        raise ValueError(f"Unknown dtype {dtype!r}. Use one of: auto, {', '.join(names)}.")
    return names[dtype]


def _cuda_has_bf16() -> bool:
    try:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    except Exception:  # pragma: no cover - no usable CUDA
        return False


def checked_placement(offload: str, vae_tiling: str, device: torch.device) -> str:
    """The offload mode to use on `device` (ValueError for unknown settings; offload needs CUDA)."""
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"Unknown offload {offload!r}. Use one of: {', '.join(OFFLOAD_MODES)}.")
    if vae_tiling not in VAE_TILING_MODES:
        raise ValueError(f"Unknown vae_tiling {vae_tiling!r}. Use one of: {', '.join(VAE_TILING_MODES)}.")
    if offload != "none" and device.type != "cuda":
        log.warning("offload=%s needs a CUDA device; rendering on %s without offload", offload, device)
        return "none"
    return offload


def place_pipeline(pipe: Any, device: torch.device, offload: str) -> None:
    """Move the pipeline to `device`, or let accelerate move each component (or layer) while it runs."""
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def speed_up(pipe: Any, family: Family, device: torch.device, offload: str, compile_denoiser: bool) -> None:
    """CUDA: channels_last UNet and VAE (attention is already PyTorch's SDPA, diffusers' default), and
    with `compile_denoiser` a regional torch.compile of the denoiser's repeated blocks (one compiled
    block reused N times: seconds to compile, not minutes)."""
    if device.type != "cuda" or offload != "none":
        return
    denoiser = getattr(pipe, family.denoiser, None)
    if family.denoiser == "unet" and denoiser is not None:
        denoiser.to(memory_format=torch.channels_last)
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if all(parameter.dim() != 5 for parameter in vae.parameters()):  # Qwen-Image's VAE has 3D convolutions
            vae.to(memory_format=torch.channels_last)
        if hasattr(vae, "enable_slicing"):  # a batch decodes image by image: its peak stays one image's
            vae.enable_slicing()
    if compile_denoiser and denoiser is not None:
        if getattr(denoiser, "_repeated_blocks", None):
            denoiser.compile_repeated_blocks(fullgraph=True, dynamic=False)
        else:
            denoiser.compile(dynamic=False)


def apply_cpu_threads(cpu_threads: int | None, device: torch.device) -> None:
    # torch's thread count is per calling thread with OpenMP, so set it on the thread that renders.
    if cpu_threads is not None and device.type == "cpu":
        torch.set_num_threads(cpu_threads)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif torch.backends.mps.is_available():
        torch.mps.empty_cache()
