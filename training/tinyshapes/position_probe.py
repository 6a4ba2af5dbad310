"""Why the prompt does not decide where a shape goes: four probes of a tinyshapes model folder.

    python -m training.tinyshapes.position_probe seeds WEIGHTS --sheet sheet.png   # 9 position prompts x 4 seeds
    python -m training.tinyshapes.position_probe x0 WEIGHTS          # clean-picture estimate from pure noise
    python -m training.tinyshapes.position_probe attention WEIGHTS   # cross-attention share of each token
    python -m training.tinyshapes.position_probe high-t WEIGHTS --latents WORK/latents.pt [--only-left]
        [--target v_prediction] [--text-lr-scale 10]   # train at t >= 600 only, x0-space loss, probing as it goes

A layout is decided at high noise. `x0` decodes the model's estimate of the clean picture at t = 900 ...
350 from the same noise for "on the left/right", "at the top/bottom" and prints the red centroid of
each: equal centroids mean the words change nothing there. `high-t` trains only there (a copy: nothing
is saved) and prints the same probe every 50 steps; `--only-left` keeps only left-placed scenes, the
control that shows whether the UNet can draw a layout at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor

from . import data, measure
from .evaluate import contact_sheet, load, render
from .build import PREDICTION_TYPES
from .train import Captions, noised

PHRASES = ("on the left", "on the right", "at the top", "at the bottom")


def _embed(pipe: StableDiffusionPipeline, prompt: str) -> torch.Tensor:
    return pipe.encode_prompt(prompt, "cpu", 1, do_classifier_free_guidance=False)[0]


def x0_centroids(pipe: StableDiffusionPipeline, steps=(900, 650, 500, 350), images: int = 8) -> list[str]:
    """Per timestep: the red centroid (x, y in pixels) of the decoded clean-picture estimate per phrase."""
    vae, unet, scaling = pipe.vae, pipe.unet, pipe.vae.config.scaling_factor
    alphas = pipe.scheduler.alphas_cumprod
    v_prediction = pipe.scheduler.config.prediction_type == "v_prediction"
    background = np.asarray(data.draw(data.Scene((), "blue")), np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    lines = []
    with torch.no_grad():
        x0_background = vae.encode(torch.from_numpy(background)).latent_dist.mode() * scaling
        empty = _embed(pipe, "").expand(images, -1, -1)
        for t in steps:
            a = alphas[t]
            noise = torch.randn(images, *x0_background.shape[1:], generator=torch.Generator().manual_seed(0))
            noisy = a.sqrt() * x0_background + (1 - a).sqrt() * noise
            row = []
            for phrase in PHRASES:
                cond = _embed(pipe, f"a red circle {phrase} on a blue background").expand(images, -1, -1)
                uncond_out, cond_out = unet(noisy, t, empty).sample, unet(noisy, t, cond).sample
                out = uncond_out + 5 * (cond_out - uncond_out)
                if v_prediction:
                    x0 = a.sqrt() * noisy - (1 - a).sqrt() * out
                else:
                    x0 = (noisy - (1 - a).sqrt() * out) / a.sqrt()
                picture = vae.decode(x0 / scaling).sample.clamp(-1, 1)
                red = (picture[:, 0] - picture[:, 2]).clamp(min=0)
                total = red.sum((1, 2)).clamp(min=1e-6)
                cx, cy = ((red * xs).sum((1, 2)) / total).mean(), ((red * ys).sum((1, 2)) / total).mean()
                row.append(f"{phrase.split()[-1]:>6} {cx:4.1f},{cy:4.1f}")
            lines.append(f"t={t}: " + " | ".join(row))
    return lines


def attention_shares(pipe: StableDiffusionPipeline, prompt: str, t: int) -> tuple[list[str], torch.Tensor]:
    """The share of cross-attention each prompt token gets, averaged over every layer, head and cell."""
    shares: list[torch.Tensor] = []

    class Recorder(AttnProcessor):
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
            if encoder_hidden_states is not None:
                query = attn.head_to_batch_dim(attn.to_q(hidden_states))
                key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
                shares.append(attn.get_attention_scores(query, key, None).mean(dim=(0, 1)))
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    saved = pipe.unet.attn_processors
    pipe.unet.set_attn_processor(Recorder())
    try:
        with torch.no_grad():
            noise = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
            pipe.unet(noise, t, _embed(pipe, prompt).expand(4, -1, -1))
    finally:
        pipe.unet.set_attn_processor(saved)
    ids = pipe.tokenizer(prompt).input_ids
    return pipe.tokenizer.convert_ids_to_tokens(ids), torch.stack(shares).mean(0)


def train_high_t(pipe: StableDiffusionPipeline, latents: Path, only_left: bool, target: str,
                 text_lr_scale: float, steps: int, lr: float = 3e-4, min_t: int = 600) -> None:
    cached = torch.load(latents, weights_only=False)
    pictures, scenes = cached["buckets"]["1:1"]["latents"], cached["buckets"]["1:1"]["scenes"]
    keep = [i for i, s in enumerate(scenes) if s.position and (not only_left or "left" in s.position)]
    pictures, scenes = pictures[keep], [scenes[i] for i in keep]
    scaling = cached["scaling_factor"]
    pipe.scheduler.register_to_config(prediction_type=target)
    te, unet = pipe.text_encoder, pipe.unet
    opt = torch.optim.AdamW([{"params": list(te.parameters()), "lr": lr * text_lr_scale},
                             {"params": list(unet.parameters()), "lr": lr}], weight_decay=0.0)
    captions = Captions(pipe.tokenizer, scenes, 0, 0.1)
    alphas = pipe.scheduler.alphas_cumprod
    pick = np.random.default_rng(0)
    print(f"{len(keep)} scenes; start", " || ".join(x0_centroids(pipe, (900, 750))), flush=True)
    losses = []
    for step in range(1, steps + 1):
        te.train(), unet.train()
        index = pick.integers(0, len(pictures), 48)
        x0 = pictures[torch.from_numpy(index)].float() * scaling
        t = torch.randint(min_t, 1000, (48,))
        a = alphas[t].view(-1, 1, 1, 1)
        noisy, wanted = noised(x0, torch.randn_like(x0), a, target)
        error = (unet(noisy, t, te(captions.batch(index))[0]).sample - wanted).pow(2)
        # At high t the v error is about the x0 error; the epsilon error is weighed to it (1/SNR).
        loss = (error if target == "v_prediction" else error * (1 - a) / a).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*te.parameters(), *unet.parameters()], 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            te.eval(), unet.eval()
            print(f"step {step} loss {np.mean(losses[-50:]):.4f}", " || ".join(x0_centroids(pipe, (900, 750))), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["seeds", "x0", "attention", "high-t"])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--sheet", type=Path, help="seeds: save the renders here")
    parser.add_argument("--latents", type=Path, help="high-t: a training run's latents.pt")
    parser.add_argument("--only-left", action="store_true")
    parser.add_argument("--target", choices=PREDICTION_TYPES, default="epsilon")
    parser.add_argument("--text-lr-scale", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pipe = load(args.weights)
    if args.probe == "seeds":
        prompts = [f"a red circle {words[0]} on a blue background" for words in data.POSITIONS.values()]
        rows = []
        for seed in range(4):
            images = render(pipe, prompts, [seed] * len(prompts))
            slots = [(r.position if r.shapes else None) for r in map(measure.read, images)]
            print(f"seed {seed}:", ", ".join(f"{name} -> {slot}" for name, slot in zip(data.POSITIONS, slots)))
            rows.append(images)
        if args.sheet:
            contact_sheet(rows).save(args.sheet)
    elif args.probe == "x0":
        print("\n".join(x0_centroids(pipe)))
    elif args.probe == "attention":
        prompt = "a red circle on the left on a blue background"
        for t in (900, 500, 100):
            tokens, share = attention_shares(pipe, prompt, t)
            words = ", ".join(f"{tok.removesuffix('</w>')} {100 * share[i]:.1f}%" for i, tok in enumerate(tokens))
            print(f"t={t}: {words}; padding {100 * share[len(tokens):].sum():.0f}%")
    else:
        if args.latents is None:
            parser.error("high-t needs --latents")
        train_high_t(pipe, args.latents, args.only_left, args.target, args.text_lr_scale, args.steps)


if __name__ == "__main__":
    main()
