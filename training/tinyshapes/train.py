"""Train the tiny shapes model: VAE, latent cache, decoder tuning, UNet + text encoder (CPU or CUDA).

From scratch:

    python -m training.tinyshapes.train --work out/tinyshapes --vae-minutes 8 --decoder-minutes 20 \
        --unet-minutes 83 --threads 1

Fine-tuning an existing model folder (its VAE and scaling factor are kept; UNet + text encoder go on
training on the aspect-ratio buckets):

    python -m training.tinyshapes.train --work out/tinyshapes-ft --finetune-from generation/tinyshapes/weights \
        --unet-minutes 100 --lr 3e-4 --threads 1

Fine-tuning extends the tokenizer with the new words (sizes, positions, counts, relations) and the
text encoder's embedding matrix with new rows, keeping every old word's row. ``--device cuda`` trains
on a GPU (bf16 autocast, no per-step host syncs); ``training/tinyshapes/gpu_run.sh`` is the one-call
GPU recipe.

The UNet stage trains on every aspect-ratio bucket of ``data.BUCKETS`` (one bucket per batch) plus,
unless ``--no-upscale-bucket``, a 128x128 bucket at low noise levels only (t < 400), which is what
the 2x upscale's img2img pass at strength 0.35 runs.

Each stage runs for a wall-clock budget (the learning rate follows a cosine over that budget), is
resumable (rerun the same command after an interruption), and the UNet stage exports its EMA
weights into ``--target`` (default ``generation/tinyshapes/weights``) every few minutes, so a usable
model is always there.

This module holds the UNet + text encoder stage and the command line; ``training_common.py`` holds the
plumbing every stage shares and ``vae_stages.py`` the VAE, latent cache and decoder tuning.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from . import training_common as common
from .build import (
    PREDICTION_TYPES,
    WEIGHTS_DIR,
    assemble,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    replace_vae,
    save_atomically,
)
from .training_common import ALPHAS_CUMPROD, Clock, autocast, border_weights, bucket_table, cosine_lr, log
from .vae_stages import cache_latents, load_vae, train_vae, tune_decoder


# --- UNet + text encoder ---------------------------------------------------------------------


def pyramid_noise(like: torch.Tensor, discount: float, levels: int = 4) -> torch.Tensor:
    """Gaussian noise plus coarser Gaussian noise upsampled (halving the grid each level, weight
    ``discount`` ** level), rescaled to unit variance. A model trained on it has seen low-frequency
    bumps that are noise, so it cannot take the seed's bumps for the layout and must read the prompt."""
    noise = torch.randn_like(like)
    height, width = like.shape[-2:]
    for level in range(1, levels + 1):
        h, w = max(1, height >> level), max(1, width >> level)
        coarse = torch.randn(*like.shape[:-2], h, w, device=like.device, dtype=like.dtype)
        noise = noise + F.interpolate(coarse, size=(height, width), mode="bilinear") * discount**level
        if h == 1 and w == 1:
            break
    return noise / noise.std(dim=(1, 2, 3), keepdim=True)


def picture_weight(snr: torch.Tensor, snr_gamma: float, layout_weight: float) -> torch.Tensor:
    """Each step's weight on the error of the picture it implies (x0): min-SNR (stops the easy low-noise
    steps from dominating), raised to min(1, ``layout_weight`` * SNR) where noise hides the layout. There
    an epsilon error carries the picture's error only times sqrt(SNR), so where a shape goes costs almost
    nothing and the seed decides it. The loss on the network's output divides this by SNR (epsilon
    target) or SNR + 1 (v target), the factors between those errors and the picture's."""
    weight = snr.clamp(max=snr_gamma)
    if layout_weight > 0:
        weight = torch.maximum(weight, (layout_weight * snr).clamp(max=1.0))
    return weight


def noised(x0: torch.Tensor, noise: torch.Tensor, alpha_cumprod: torch.Tensor, prediction_type: str
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's input at cumulative alpha ``alpha_cumprod`` (broadcast per image) and what it should
    output there: the noise (epsilon) or v = sqrt(a)·noise - sqrt(1-a)·x0, minus the picture at high noise."""
    a = alpha_cumprod
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    wanted = noise if prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    return noisy, wanted


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


def export(work: Path, tokenizer, text_encoder, unet, scaling_factor: float, target: Path, note: dict,
           prediction_type: str = "epsilon"):
    vae = build_vae(scaling_factor)
    vae.load_state_dict(torch.load(work / "vae_final.pt"))
    # float16 on disk halves the folder; diffusers loads it as float32 unless told otherwise.
    pipe = assemble(tokenizer, copy.deepcopy(text_encoder).cpu(), vae.half(), copy.deepcopy(unet).cpu().half(),
                    build_scheduler(prediction_type))
    save_atomically(pipe, target, note)


def extend_vocabulary(text_encoder, old_tokenizer, tokenizer) -> None:
    """Give ``text_encoder`` (trained with ``old_tokenizer``) one embedding row per token of ``tokenizer``:
    every old token keeps its row, new ones start as random rows with the old rows' mean and spread."""
    old_rows = text_encoder.get_input_embeddings().weight.detach().clone()
    old_ids = old_tokenizer.get_vocab()
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    rows = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        # Full-spread random rows: rows near the mean (tiny, similar to each other) barely moved in training.
        fresh = old_rows.mean(0) + torch.randn(len(tokenizer), old_rows.shape[1]) * old_rows.std(0)
        for token, new_id in tokenizer.get_vocab().items():
            rows[new_id] = old_rows[old_ids[token]] if token in old_ids else fresh[new_id]
    text_encoder.config.vocab_size = len(tokenizer)


def load_for_finetuning(init_from: Path, tokenizer):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    text_encoder = CLIPTextModel.from_pretrained(init_from / "text_encoder", dtype=torch.float32)
    old_tokenizer = CLIPTokenizer.from_pretrained(init_from / "tokenizer")
    if old_tokenizer.get_vocab() != tokenizer.get_vocab():
        extend_vocabulary(text_encoder, old_tokenizer, tokenizer)
    unet = UNet2DConditionModel.from_pretrained(init_from / "unet", torch_dtype=torch.float32)
    return text_encoder, unet


def train_unet(work: Path, seed: int, minutes: float, target: Path, buckets: dict[str, dict], lr: float = 1e-3,
               ema_decay: float = 0.998, dropout: float = 0.1, snr_gamma: float = 5.0, export_every: float = 300,
               init_from: Path | None = None, warmup: float = 0.02, max_steps: int | None = None,
               border: float = 1.0, embedding_lr_scale: float = 1.0, layout_weight: float = 0.0,
               pyramid: float = 0.0, prediction_type: str = "epsilon"):
    """``border`` > 1 weighs the noise error on the latents' outermost ring that much more: the UNet's zero
    padding otherwise leaves the picture's edge a little off the background (the border frame)."""
    cached = torch.load(work / "latents.pt", weights_only=False)
    scaling = cached["scaling_factor"]
    sets = {name: (cached["buckets"][name]["latents"].to(common.DEVICE), cached["buckets"][name]["scenes"]) for name in buckets}
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    if init_from is not None:
        text_encoder, unet = load_for_finetuning(init_from, tokenizer)
    else:
        text_encoder, unet = build_text_encoder(tokenizer), build_unet()
    text_encoder.to(common.DEVICE).train()
    unet.to(common.DEVICE).train()
    params = list(text_encoder.parameters()) + list(unet.parameters())
    # The word embeddings learn ``embedding_lr_scale`` times faster (as in textual inversion): a new word's
    # row must travel far, while the rest of the network only adjusts.
    embeddings = text_encoder.get_input_embeddings().weight
    opt = torch.optim.AdamW([
        {"params": [p for p in params if p is not embeddings], "lr_scale": 1.0},
        {"params": [embeddings], "lr_scale": embedding_lr_scale, "weight_decay": 0.0},
    ], lr=lr, weight_decay=0.01, foreach=True)
    ema_te, ema_unet = copy.deepcopy(text_encoder), copy.deepcopy(unet)
    ema_params = list(ema_te.parameters()) + list(ema_unet.parameters())
    state_path, step, clock = work / "unet_state.pt", 0, Clock()
    if state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location=common.DEVICE)
        for module, key in [(text_encoder, "te"), (unet, "unet"), (ema_te, "ema_te"), (ema_unet, "ema_unet")]:
            module.load_state_dict(state[key])
        opt.load_state_dict(state["opt"])
        step, clock = state["step"], Clock(state["elapsed"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if common.DEVICE.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
    captions = {name: Captions(tokenizer, scenes, seed + step + b, dropout) for b, (name, (_, scenes)) in enumerate(sets.items())}
    pick = np.random.default_rng(seed + step)
    names = list(buckets)
    # 1:1 is the default shape: it gets twice the batches of any other bucket.
    share = np.array([2.0 if name == "1:1" else 1.0 for name in names])
    share /= share.sum()
    budget, last_export = minutes * 60, time.monotonic()
    alphas = ALPHAS_CUMPROD.to(common.DEVICE)
    # Losses stay on the device until a log line needs them: no host sync per step.
    pending: list[tuple[str, torch.Tensor]] = []
    recent: list[float] = []
    bucket_losses: dict[str, list[float]] = {name: [] for name in names}
    ring_weights: dict[str, torch.Tensor] = {}

    def drain():
        if pending:
            values = torch.stack([loss for _, loss in pending]).tolist()
            for (name, _), value in zip(pending, values):
                bucket_losses[name].append(value)
                recent.append(value)
            pending.clear()

    def checkpoint():
        drain()
        note = {"stage": "unet", "step": step, "train_seconds": round(clock.elapsed), "device": common.DEVICE.type,
                "init_from": None if init_from is None else str(init_from),
                "buckets": {name: [*spec["size"], spec["batch"], spec["max_t"]] for name, spec in buckets.items()},
                "recent_loss": float(np.mean(recent[-200:])) if recent else None}
        state = {"te": text_encoder.state_dict(), "unet": unet.state_dict(), "ema_te": ema_te.state_dict(),
                 "ema_unet": ema_unet.state_dict(), "opt": opt.state_dict(), "step": step,
                 "elapsed": clock.elapsed, "torch_rng": torch.get_rng_state()}
        if common.DEVICE.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state()
        torch.save(state, work / "unet_state.tmp")
        os.replace(work / "unet_state.tmp", state_path)
        export(work, tokenizer, ema_te, ema_unet, scaling, target, note, prediction_type)
        log(work, f"exported step {step} to {target}")

    while clock.elapsed < budget and (max_steps is None or step < max_steps):
        progress = clock.elapsed / budget if max_steps is None else max(clock.elapsed / budget, step / max_steps)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, progress, warmup) * group["lr_scale"]
        name = names[pick.choice(len(names), p=share)]
        spec, (latents, _) = buckets[name], sets[name]
        indices = pick.integers(0, len(latents), spec["batch"])
        x0 = latents[torch.from_numpy(indices).to(common.DEVICE)].float() * scaling
        ids = captions[name].batch(indices).to(common.DEVICE, non_blocking=True)
        t = torch.randint(0, spec["max_t"], (len(indices),), device=common.DEVICE)
        noise = pyramid_noise(x0, pyramid) if pyramid > 0 else torch.randn_like(x0)
        noisy, wanted = noised(x0, noise, alphas[t].view(-1, 1, 1, 1), prediction_type)
        with autocast():
            pred = unet(noisy, t, text_encoder(ids)[0]).sample.float()
        snr = alphas[t] / (1 - alphas[t])
        loss_weight = picture_weight(snr, snr_gamma, layout_weight) / (snr if prediction_type == "epsilon" else snr + 1)
        if name not in ring_weights:
            ring_weights[name] = border_weights(x0.shape[-2], x0.shape[-1], ring=1, weight=border).to(common.DEVICE)
        loss = (loss_weight * ((pred - wanted).pow(2) * ring_weights[name]).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        step += 1
        # Warm-up of the EMA: early on it follows the weights closely (a fine-tune's new words are untrained).
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        pending.append((name, loss.detach()))
        if step % 100 == 0:
            drain()
            per = " ".join(f"{n}:{np.mean(v[-30:]):.4f}" for n, v in bucket_losses.items() if v)
            log(work, f"unet step {step} t={clock.elapsed:.0f}s lr {opt.param_groups[0]['lr']:.2e} "
                      f"loss {np.mean(recent[-100:]):.4f} [{per}]")
        if time.monotonic() - last_export > export_every:
            checkpoint()
            last_export = time.monotonic()
    checkpoint()
    log(work, f"unet done: {step} steps in {clock.elapsed:.0f}s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("out/tinyshapes"), help="checkpoints, latents, log")
    parser.add_argument("--target", type=Path, default=WEIGHTS_DIR, help="where the diffusers folder goes")
    parser.add_argument("--finetune-from", type=Path, help="a model folder: keep its VAE, continue its UNet + text encoder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-minutes", type=float, default=8)
    parser.add_argument("--decoder-minutes", type=float, default=20)
    parser.add_argument("--unet-minutes", type=float, default=83)
    parser.add_argument("--lr", type=float, default=1e-3, help="UNet + text encoder peak learning rate")
    parser.add_argument("--ema-decay", type=float, default=0.998, help="EMA of the exported UNet + text encoder")
    parser.add_argument("--batch", type=int, default=48, help="images per UNet batch at 64x64 area")
    parser.add_argument("--per-bucket", type=int, default=6000, help="cached training images per bucket")
    parser.add_argument("--no-upscale-bucket", action="store_true", help="no 128x128 low-noise bucket")
    parser.add_argument("--decoder-l1", type=float, default=0.0, help="L1 weight in decoder tuning (sharper edges)")
    parser.add_argument("--decoder-lr", type=float, default=5e-4)
    parser.add_argument("--stages", default="all", help="all, or a comma list of: vae,latents,decoder,unet "
                        "(e.g. decoder tuning in a second process next to the UNet stage)")
    parser.add_argument("--decoder-border", type=float, default=1.0,
                        help="loss weight of the outermost 3 pixels in decoder tuning (>1 trains the border frame away)")
    parser.add_argument("--unet-border", type=float, default=1.0,
                        help="loss weight of the latents' outermost ring in UNet training (>1 against the border frame)")
    parser.add_argument("--embedding-lr-scale", type=float, default=10.0,
                        help="learning-rate factor of the text encoder's word embeddings (new words must move far)")
    parser.add_argument("--layout-weight", type=float, default=0.0,
                        help="weigh noisy steps (SNR < 1) by 1/SNR up to this, so the prompt decides where shapes go")
    parser.add_argument("--pyramid-noise", type=float, default=0.0,
                        help="add coarser noise levels with this discount (0.3-0.8) so the seed cannot dictate the layout")
    parser.add_argument("--prediction-type", default="epsilon", choices=PREDICTION_TYPES,
                        help="the UNet's target; v_prediction's output is the picture at high noise, where layout is decided")
    parser.add_argument("--decoder-steps", type=int, help="stop decoder tuning after this many steps")
    parser.add_argument("--unet-steps", type=int, help="stop the UNet stage after this many steps")
    parser.add_argument("--export-minutes", type=float, default=5, help="export the EMA weights this often")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 1 is fastest on a shared CPU")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--max-minutes", type=float, help="wall-clock budget of this whole command: the UNet "
                        "stage gets what the earlier stages leave (its cosine follows that)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stages = {"vae", "latents", "decoder", "unet"} if args.stages == "all" else set(args.stages.split(","))
    common.DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if common.DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.work.mkdir(parents=True, exist_ok=True)
    log(args.work, f"start {json.dumps({k: str(v) for k, v in vars(args).items()})}")
    buckets = bucket_table(args.batch, upscale=not args.no_upscale_bucket)
    scaling = None
    if args.finetune_from is not None:
        from diffusers import AutoencoderKL

        source = AutoencoderKL.from_pretrained(args.finetune_from / "vae", torch_dtype=torch.float32)
        scaling = source.config.scaling_factor
        if not (args.work / "vae_final.pt").exists():
            vae = build_vae()
            vae.load_state_dict(source.state_dict())
            torch.save(vae.state_dict(), args.work / "vae_final.pt")
            log(args.work, f"fine-tuning {args.finetune_from}: VAE kept, scaling_factor {scaling:.4f}")
    elif "vae" in stages:
        train_vae(args.work, args.seed, args.vae_minutes)
    if "latents" in stages:
        cache_latents(args.work, args.seed, args.per_bucket, buckets, scaling)
    if "decoder" in stages:
        tune_decoder(args.work, args.seed, args.decoder_minutes, lr=args.decoder_lr, l1=args.decoder_l1,
                     buckets=buckets if args.finetune_from is not None else None, border=args.decoder_border,
                     max_steps=args.decoder_steps)
        if args.finetune_from is not None and scaling is not None and "unet" not in stages:
            # A decoder-only fine-tune: the source model with the tuned decoder (the UNet stage would
            # otherwise export it with its own weights).
            replace_vae(args.finetune_from, load_vae(args.work, scaling), args.target,
                        {"tuned": f"{time.strftime('%Y-%m-%d')}, training.tinyshapes.train {' '.join(argv or sys.argv[1:])}",
                         "why": "the border frame (frame.py)"})
            log(args.work, f"wrote {args.finetune_from} with the tuned decoder to {args.target}")
    if "unet" in stages:
        unet_minutes = args.unet_minutes
        if args.max_minutes is not None:
            unet_minutes = min(unet_minutes, args.max_minutes - (time.monotonic() - started) / 60)
            log(args.work, f"UNet budget {unet_minutes:.2f} minutes (of --max-minutes {args.max_minutes:g})")
        train_unet(args.work, args.seed, unet_minutes, args.target, buckets, lr=args.lr, ema_decay=args.ema_decay,
                   init_from=args.finetune_from, warmup=0.02 if args.finetune_from is None else 0.01,
                   max_steps=args.unet_steps, export_every=args.export_minutes * 60, border=args.unet_border,
                   embedding_lr_scale=args.embedding_lr_scale, layout_weight=args.layout_weight, pyramid=args.pyramid_noise,
                   prediction_type=args.prediction_type)


if __name__ == "__main__":
    main()
