"""Seeded starting noise (with A1111-style variations) and cheap previews of latents."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import PIL.Image
import torch

log = logging.getLogger(__name__)


def seeded_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal noise from a fresh CPU generator, so a seed means the same on every device."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


def slerp(t: float, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (A1111's subseed blend).

    Unlike a straight lerp it keeps the noise's norm, so a blended noise is still valid noise.
    """
    start_flat, end_flat = start.flatten(), end.flatten()
    cos_omega = torch.dot(start_flat / start_flat.norm(), end_flat / end_flat.norm()).clamp(-1.0, 1.0)
    if cos_omega > 0.9995:  # nearly parallel: slerp degenerates to lerp
        return (1.0 - t) * start + t * end
    omega = torch.acos(cos_omega)
    sin_omega = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) / sin_omega) * start + (torch.sin(t * omega) / sin_omega) * end


def initial_noise(
    shape: tuple[int, ...],
    generator: torch.Generator,
    variation_seed: int | None = None,
    variation_strength: float = 0.0,
) -> torch.Tensor:
    """The starting latents for one image: noise from its seeded `generator`, bent towards the noise of
    `variation_seed` (A1111 subseed semantics).

    The noise is drawn exactly as a diffusers pipeline draws it from the same generator, and the
    generator is left advanced, so stochastic samplers continue the same random stream.
    variation_strength 0 gives exactly the seed's noise (slerp at t=0 is the identity), so a variation
    at strength 0 renders its parent; 0.15 is a subtle variation, 0.5 a strong one.
    """
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if variation_seed is None:
        return noise
    return slerp(variation_strength, noise, seeded_noise(shape, variation_seed))


def _encode(vae: Any, images: torch.Tensor, device: Any, dtype: torch.dtype) -> torch.Tensor:
    with torch.no_grad():
        return vae.encode(images.to(device, dtype)).latent_dist.mean.float().cpu()


class LatentPreview:
    """A linear latent -> RGB map, fitted once per VAE, for progress previews without decoding.

    Works for every family: 4-channel (SD, SDXL) and 16-channel (SD3, Flux) latents; Flux's packed
    latents are unpacked by its family first.

    The map is fitted by least squares on a few synthetic images encoded by the model's own VAE,
    so it works for any latent space (SD's published 4x3 coefficients only fit SD's VAE).
    """

    def __init__(self, vae: Any, scale_factor: int, size: int = 64, device: torch.device | None = None):
        self.scale_factor = scale_factor
        generator = torch.Generator("cpu").manual_seed(0)
        # Blocky random colours plus gradients: enough variety to pin down a 4x3 map.
        blocks = torch.rand((4, 3, 4, 4), generator=generator).repeat_interleave(size // 4, 2)
        blocks = blocks.repeat_interleave(size // 4, 3)
        ramp = torch.linspace(0, 1, size)
        gradients = torch.stack(
            [ramp.expand(size, size), ramp[:, None].expand(size, size), 1 - ramp.expand(size, size)]
        )
        images = torch.cat([blocks, gradients[None]]) * 2 - 1  # VAE input range [-1, 1]
        parameter = next(vae.parameters())
        device = parameter.device if device is None else device  # offloaded: the execution device
        latents = _encode(vae, images, device, parameter.dtype)
        if not torch.isfinite(latents).all() and parameter.dtype != torch.float32:
            # fp16 VAEs that need upcasting (SDXL's) can overflow: fit on a float32 copy instead
            try:
                latents = _encode(copy.deepcopy(vae).float(), images, device, torch.float32)
            except Exception:  # pragma: no cover - e.g. an offloaded VAE that cannot be copied
                log.warning("latent preview: the VAE could not be upcast for fitting", exc_info=True)
        # The pipelines' latent space: (z - shift) * scale; SD3 and Flux VAEs have a shift, SD's none.
        latents = (latents - (getattr(vae.config, "shift_factor", None) or 0.0)) * vae.config.scaling_factor
        target = torch.nn.functional.avg_pool2d(images, scale_factor)  # RGB at latent resolution
        x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        x = torch.cat([x, torch.ones(len(x), 1)], dim=1)  # bias column
        y = target.permute(0, 2, 3, 1).reshape(-1, 3)
        if torch.isfinite(x).all():
            self.weights = torch.linalg.lstsq(x, y).solution  # (channels + 1, 3)
        else:  # previews are a nicety: grey ones rather than a failed load
            log.warning("latent preview: the VAE encodes to NaN/inf; previews will be grey")
            self.weights = torch.zeros(x.shape[1], 3)

    def image(self, latents: torch.Tensor) -> PIL.Image.Image:
        """Preview of the first image in a latent batch, at output size."""
        latent = latents[0].detach().float().cpu().permute(1, 2, 0)  # H, W, C
        rgb = torch.cat([latent, torch.ones(*latent.shape[:2], 1)], dim=2) @ self.weights
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        image = PIL.Image.fromarray(np.ascontiguousarray(pixels), "RGB")
        return image.resize((image.width * self.scale_factor, image.height * self.scale_factor), PIL.Image.Resampling.NEAREST)
