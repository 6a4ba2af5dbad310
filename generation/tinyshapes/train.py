"""Train the tiny shapes model on this CPU: VAE, latent cache, decoder tuning, UNet + text encoder.

    python -m generation.tinyshapes.train --work out/tinyshapes --vae-minutes 8 --decoder-minutes 20 \
        --unet-minutes 83 --threads 1

Each stage runs for a wall-clock budget (the learning rate follows a cosine over that budget), is
resumable (rerun the same command after an interruption), and the UNet stage exports its EMA
weights into ``generation/tinyshapes/weights`` every few minutes, so a usable model is always there.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .build import (
    WEIGHTS_DIR,
    assemble,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    save_atomically,
)

BETAS = torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64)  # same as build_scheduler()
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0).float()


def log(work: Path, message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    with open(work / "train.log", "a") as f:
        f.write(line + "\n")


def cosine_lr(base: float, fraction: float, warmup: float) -> float:
    if fraction < warmup:
        return base * fraction / warmup
    progress = min(1.0, (fraction - warmup) / (1 - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class Clock:
    """Training time that survives restarts: elapsed seconds are stored in the checkpoint."""

    def __init__(self, already: float = 0.0):
        self.start = time.monotonic() - already

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


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


@torch.no_grad()
def cache_latents(work: Path, seed: int, count: int):
    path = work / "latents.pt"
    if path.exists():
        return
    vae = build_vae()
    vae.load_state_dict(torch.load(work / "vae_final.pt"))
    vae.eval()
    latents, scenes = [], []
    for start in range(0, count, 500):
        pixels, batch_scenes, _ = data.make_batch(seed, start, min(500, count - start))
        latents.append(vae.encode(torch.from_numpy(pixels)).latent_dist.mode())
        scenes.extend(batch_scenes)
    latents = torch.cat(latents)
    scaling = 1.0 / latents.std().item()
    log(work, f"cached {count} latents, std {latents.std().item():.4f} -> scaling_factor {scaling:.4f}")
    torch.save({"latents": latents, "scenes": scenes, "scaling_factor": scaling}, path)


def tune_decoder(work: Path, seed: int, minutes: float, batch: int = 32, lr: float = 5e-4):
    """Sharpen the decoder with the encoder frozen: the cached latents stay valid."""
    done = work / "decoder_done"
    if done.exists() or minutes <= 0:
        return
    vae = build_vae()
    vae.load_state_dict(torch.load(work / "vae_final.pt"))
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    val_pixels = torch.from_numpy(data.make_batch(seed + 99, 0, 64)[0])
    log(work, f"decoder tuning from val psnr {psnr(vae, val_pixels):.2f}dB")
    budget, clock, step = minutes * 60, Clock(), 0
    while clock.elapsed < budget:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, clock.elapsed / budget, 0.02)
        pixels = torch.from_numpy(data.make_batch(seed, 2 * 10**7 + step * batch, batch)[0])
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mode()
        loss = F.mse_loss(vae.decode(latents).sample, pixels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            log(work, f"decoder step {step} t={clock.elapsed:.0f}s loss {loss.item():.5f} psnr {psnr(vae, val_pixels):.2f}dB")
            torch.save(vae.state_dict(), work / "vae_tuned.tmp")
            os.replace(work / "vae_tuned.tmp", work / "vae_final.pt")  # exports pick it up atomically
    torch.save(vae.state_dict(), work / "vae_tuned.tmp")
    os.replace(work / "vae_tuned.tmp", work / "vae_final.pt")
    done.touch()
    log(work, f"decoder done: {step} steps in {clock.elapsed:.0f}s, val psnr {psnr(vae, val_pixels):.2f}dB")


# --- UNet + text encoder ---------------------------------------------------------------------


class Captions:
    """Random caption templates per example, with caption dropout; tokenized once per string."""

    def __init__(self, tokenizer, scenes, seed: int, dropout: float):
        self.tokenizer, self.scenes, self.dropout = tokenizer, scenes, dropout
        self.rng = random.Random(seed)
        self.cache: dict[str, torch.Tensor] = {}

    def ids(self, text: str) -> torch.Tensor:
        if text not in self.cache:
            self.cache[text] = self.tokenizer(
                text, padding="max_length", max_length=self.tokenizer.model_max_length,
                truncation=True, return_tensors="pt",
            ).input_ids[0]
        return self.cache[text]

    def batch(self, indices) -> torch.Tensor:
        texts = [
            "" if self.rng.random() < self.dropout else data.caption(self.scenes[i], self.rng)
            for i in indices
        ]
        return torch.stack([self.ids(t) for t in texts])


def export(work: Path, tokenizer, text_encoder, unet, scaling_factor: float, target: Path, note: dict):
    vae = build_vae(scaling_factor)
    vae.load_state_dict(torch.load(work / "vae_final.pt"))
    # float16 on disk halves the folder; diffusers loads it as float32 unless told otherwise.
    pipe = assemble(tokenizer, copy.deepcopy(text_encoder), vae.half(), copy.deepcopy(unet).half())
    save_atomically(pipe, target, note)


def train_unet(work: Path, seed: int, minutes: float, target: Path, batch: int = 48, lr: float = 1e-3,
               ema_decay: float = 0.998, dropout: float = 0.1, snr_gamma: float = 5.0, export_every: float = 300):
    cached = torch.load(work / "latents.pt", weights_only=False)
    latents = cached["latents"] * cached["scaling_factor"]
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder, unet = build_text_encoder(tokenizer), build_unet()
    params = list(text_encoder.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema_te, ema_unet = copy.deepcopy(text_encoder), copy.deepcopy(unet)
    ema_params = list(ema_te.parameters()) + list(ema_unet.parameters())
    state_path, step, clock = work / "unet_state.pt", 0, Clock()
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        for module, key in [(text_encoder, "te"), (unet, "unet"), (ema_te, "ema_te"), (ema_unet, "ema_unet")]:
            module.load_state_dict(state[key])
        opt.load_state_dict(state["opt"])
        step, clock = state["step"], Clock(state["elapsed"])
        torch.set_rng_state(state["torch_rng"])
    captions = Captions(tokenizer, cached["scenes"], seed + step, dropout)
    pick = np.random.default_rng(seed + step)
    budget, last_export, losses = minutes * 60, time.monotonic(), []

    def checkpoint():
        note = {"stage": "unet", "step": step, "train_seconds": round(clock.elapsed), "batch": batch,
                "recent_loss": float(np.mean(losses[-200:])) if losses else None}
        torch.save({"te": text_encoder.state_dict(), "unet": unet.state_dict(), "ema_te": ema_te.state_dict(),
                    "ema_unet": ema_unet.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed": clock.elapsed, "torch_rng": torch.get_rng_state()}, state_path)
        export(work, tokenizer, ema_te, ema_unet, cached["scaling_factor"], target, note)
        log(work, f"exported step {step} to {target}")

    while clock.elapsed < budget:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, clock.elapsed / budget, 0.02)
        indices = pick.integers(0, len(latents), batch)
        x0 = latents[indices]
        ids = captions.batch(indices)
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(x0)
        a = ALPHAS_CUMPROD[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(noisy, t, text_encoder(ids)[0]).sample
        # Min-SNR weighting: stops the easy low-noise steps from dominating the gradient.
        snr = ALPHAS_CUMPROD[t] / (1 - ALPHAS_CUMPROD[t])
        weight = snr.clamp(max=snr_gamma) / snr
        loss = (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        losses.append(loss.item())
        if step % 100 == 0:
            log(work, f"unet step {step} t={clock.elapsed:.0f}s lr {opt.param_groups[0]['lr']:.2e} loss {np.mean(losses[-100:]):.4f}")
        if time.monotonic() - last_export > export_every:
            checkpoint()
            last_export = time.monotonic()
    checkpoint()
    log(work, f"unet done: {step} steps in {clock.elapsed:.0f}s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("out/tinyshapes"), help="checkpoints, latents, log")
    parser.add_argument("--target", type=Path, default=WEIGHTS_DIR, help="where the diffusers folder goes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-minutes", type=float, default=8)
    parser.add_argument("--decoder-minutes", type=float, default=20)
    parser.add_argument("--unet-minutes", type=float, default=83)
    parser.add_argument("--dataset-size", type=int, default=40_000)
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared CPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    log(args.work, f"start {json.dumps({k: str(v) for k, v in vars(args).items()})}")
    train_vae(args.work, args.seed, args.vae_minutes)
    cache_latents(args.work, args.seed, args.dataset_size)
    tune_decoder(args.work, args.seed, args.decoder_minutes)
    train_unet(args.work, args.seed, args.unet_minutes, args.target)


if __name__ == "__main__":
    main()
