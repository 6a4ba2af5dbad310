"""The VAE stages of the tiny shapes training: train the VAE, cache the UNet's latents, tune the decoder."""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from . import training_common as common
from .build import build_vae
from .training_common import UPSCALE_BUCKET, Clock, autocast, border_weights, cosine_lr, log


# --- VAE -----------------------------------------------------------------------------------


def train_vae(work: Path, seed: int, minutes: float, batch: int = 32, lr: float = 1e-3):
    final = work / "vae_final.pt"
    if final.exists():
        return
    torch.manual_seed(seed)
    vae = build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    state_path, step, clock = work / "vae_state.pt", 0, Clock()
    if state_path.exists():
        state = torch.load(state_path)
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        step, clock = state["step"], Clock(state["elapsed"])
    budget, last_save = minutes * 60, time.monotonic()
    val_pixels = torch.from_numpy(data.make_batch(seed + 99, 0, 64)[0])
    while clock.elapsed < budget:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, clock.elapsed / budget, 0.03)
        # VAE images come from a stream disjoint from the cached UNet dataset (indices < 10^7).
        pixels = torch.from_numpy(data.make_batch(seed, 10**7 + step * batch, batch)[0])
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, pixels) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            log(work, f"vae step {step} t={clock.elapsed:.0f}s loss {loss.item():.5f} psnr {psnr(vae, val_pixels):.2f}dB")
        if time.monotonic() - last_save > 120:
            torch.save({"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": clock.elapsed}, state_path)
            last_save = time.monotonic()
    log(work, f"vae done: {step} steps in {clock.elapsed:.0f}s, val psnr {psnr(vae, val_pixels):.2f}dB")
    torch.save(vae.state_dict(), final)


@torch.no_grad()
def psnr(vae, pixels: torch.Tensor) -> float:
    recon = vae.decode(vae.encode(pixels).latent_dist.mode()).sample.clamp(-1, 1)
    mse = F.mse_loss(recon, pixels).item() / 4  # images span [-1, 1]: a range of 2
    return 10 * math.log10(1 / mse)


# --- cached latents --------------------------------------------------------------------------


def load_vae(work: Path, scaling: float | None = None):
    vae = build_vae() if scaling is None else build_vae(scaling)
    vae.load_state_dict(torch.load(work / "vae_final.pt"))
    vae.eval()
    return vae


@torch.no_grad()
def cache_latents(work: Path, seed: int, count: int, buckets: dict[str, dict], scaling: float | None = None):
    """Encode ``count`` images per bucket once (posterior mode). Bucket number b uses dataset indices
    from b * 10^6, so no two buckets share a scene. Without a given scaling factor (training from
    scratch) it is 1/std of the 1:1 latents."""
    path = work / "latents.pt"
    if path.exists():
        return
    vae = load_vae(work).to(common.DEVICE)
    cache: dict[str, dict] = {}
    for b, (name, spec) in enumerate(buckets.items()):
        n = count if name != UPSCALE_BUCKET[0] else max(500, count // 4)
        latents, scenes = [], []
        jobs = [(seed, b * 10**6 + start, min(250, n - start), spec["size"]) for start in range(0, n, 250)]
        for pixels, batch_scenes, _ in _drawn(jobs):
            encoded = vae.encode(torch.from_numpy(pixels).to(common.DEVICE)).latent_dist.mode()
            latents.append(encoded.half().cpu())
            scenes.extend(batch_scenes)
        cache[name] = {"latents": torch.cat(latents), "scenes": scenes}
        log(work, f"cached {n} latents for bucket {name} {spec['size'][0]}x{spec['size'][1]}")
    if scaling is None:
        scaling = 1.0 / cache["1:1"]["latents"].float().std().item()
    log(work, f"latents std (1:1) {cache['1:1']['latents'].float().std().item():.4f}, scaling_factor {scaling:.4f}")
    torch.save({"buckets": cache, "scaling_factor": scaling}, path)


def _make_batch(job):
    return data.make_batch(*job)


def _drawn(jobs):
    """``data.make_batch`` of each job, on every core when there are several (the GPU machine has 16)."""
    workers = min(len(jobs), os.cpu_count() or 1, 16)
    if workers <= 2:
        yield from map(_make_batch, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_make_batch, jobs)


# --- decoder tuning --------------------------------------------------------------------------


def tune_decoder(work: Path, seed: int, minutes: float, batch: int = 32, lr: float = 5e-4, l1: float = 0.0,
                 buckets: dict[str, dict] | None = None, border: float = 1.0, max_steps: int | None = None,
                 pool_size: int = 2000):
    """Sharpen the decoder with the encoder frozen: the cached latents stay valid. With ``buckets``,
    batches cycle through their image sizes; ``l1`` adds an L1 term (sharper edges than MSE alone);
    ``border`` > 1 weighs the outermost 3 pixels that much more (the decoder's zero padding drew a
    frame there)."""
    done = work / "decoder_done"
    if done.exists() or minutes <= 0:
        return
    vae = build_vae()
    vae.load_state_dict(torch.load(work / "vae_final.pt"))
    vae.to(common.DEVICE)
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    sizes = [spec["size"] for spec in buckets.values()] if buckets else [(data.IMAGE_SIZE, data.IMAGE_SIZE)]
    pixel_budget = batch * data.IMAGE_SIZE * data.IMAGE_SIZE
    val_pixels = torch.from_numpy(data.make_batch(seed + 99, 0, 64)[0]).to(common.DEVICE)
    val_wide = torch.from_numpy(data.make_batch(seed + 99, 0, 64, sizes[-1])[0]).to(common.DEVICE) if buckets else None
    weights = {size: border_weights(size[1], size[0], weight=border).to(common.DEVICE) for size in sizes}

    def quality() -> str:
        text = f"psnr {psnr(vae, val_pixels):.2f}dB"
        return text + (f" ({sizes[-1][0]}x{sizes[-1][1]}: {psnr(vae, val_wide):.2f}dB)" if val_wide is not None else "")

    log(work, f"decoder tuning from val {quality()}")
    start_psnr, start_state = psnr(vae, val_pixels), copy.deepcopy(vae.state_dict())
    # A fixed pool of drawn images per size (drawn on every core), batches sampled from it.
    pools = {}
    for n, (w, h) in enumerate(sizes):
        jobs = [(seed, 2 * 10**7 + n * 10**6 + start, 250, (w, h)) for start in range(0, pool_size, 250)]
        pools[(w, h)] = torch.from_numpy(np.concatenate([pixels for pixels, _, _ in _drawn(jobs)])).to(common.DEVICE)
    pick = torch.Generator().manual_seed(seed)
    budget, clock, step = minutes * 60, Clock(), 0  # the budget is for training, not for drawing the pools
    while clock.elapsed < budget and (max_steps is None or step < max_steps):
        progress = clock.elapsed / budget if max_steps is None else max(clock.elapsed / budget, step / max_steps)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, progress, 0.02)
        w, h = sizes[step % len(sizes)]
        pool = pools[(w, h)]
        pixels = pool[torch.randint(0, len(pool), (max(4, pixel_budget // (w * h)),), generator=pick).to(common.DEVICE)]
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mode()
        with autocast():
            recon = vae.decode(latents).sample.float()
        weight = weights[(pixels.shape[-1], pixels.shape[-2])]
        loss = ((recon - pixels).pow(2) * weight).mean() + l1 * ((recon - pixels).abs() * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            log(work, f"decoder step {step} t={clock.elapsed:.0f}s loss {loss.item():.5f} {quality()}")
            torch.save({k: v.cpu() for k, v in vae.state_dict().items()}, work / "vae_tuned.tmp")
            os.replace(work / "vae_tuned.tmp", work / "vae_final.pt")  # exports pick it up atomically
    if psnr(vae, val_pixels) < start_psnr - 0.5:  # a clean border is not worth a blurrier picture
        log(work, f"decoder tuning lost {start_psnr - psnr(vae, val_pixels):.2f} dB: the decoder is kept as it was")
        vae.load_state_dict(start_state)
    torch.save({k: v.cpu() for k, v in vae.state_dict().items()}, work / "vae_tuned.tmp")
    os.replace(work / "vae_tuned.tmp", work / "vae_final.pt")
    done.touch()
    log(work, f"decoder done: {step} steps in {clock.elapsed:.0f}s, val {quality()}")
