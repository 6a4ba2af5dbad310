"""Render a fixed set of prompts x seeds and check from the pixels whether the model follows them.

    python -m generation.tinyshapes.evaluate [--weights PATH] [--grid generation/tinyshapes/grid.png]

Default settings: DPM++ 2M (the folder's scheduler), 20 steps, guidance 5, native 64x64.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image, ImageDraw

from . import data, measure
from .build import WEIGHTS_DIR

STEPS, GUIDANCE = 20, 5.0


def load(weights: Path = WEIGHTS_DIR) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(weights)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, prompts, seeds, *, negative: str | None = None, guidance: float = GUIDANCE,
           steps: int = STEPS, batch: int = 16, **kwargs) -> list[Image.Image]:
    """One image per (prompt, seed); each image gets its own freshly seeded generator."""
    images = []
    for start in range(0, len(prompts), batch):
        chunk, chunk_seeds = prompts[start : start + batch], seeds[start : start + batch]
        images += pipe(
            chunk,
            negative_prompt=None if negative is None else [negative] * len(chunk),
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator().manual_seed(s) for s in chunk_seeds],
            **kwargs,
        ).images
    return images


def prompt_set(seeds_per_prompt: int = 2):
    """48 scenes (every colour x shape, two backgrounds each) x seeds; deterministic."""
    cases = []
    for i, colour in enumerate(data.COLOURS):
        for j, shape in enumerate(data.SHAPES):
            for k in range(2):
                background = data.COLOURS[(i + 1 + j + 3 * k) % len(data.COLOURS)]
                for s in range(seeds_per_prompt):
                    cases.append((colour, shape, background, 1000 * s + len(cases)))
    return cases


def score(images, cases) -> dict[str, float]:
    hits = Counter()
    for image, (colour, shape, background, _) in zip(images, cases):
        got = measure.read(image)
        ok = {"colour": got.colour == colour, "background": got.background == background, "shape": got.shape == shape}
        hits.update(k for k, v in ok.items() if v)
        hits["all three"] += all(ok.values())
    return {k: hits[k] / len(cases) for k in ("colour", "background", "shape", "all three")}


def save_grid(images, cases, path: Path, columns: int = 6, scale: int = 2) -> None:
    cell = data.IMAGE_SIZE * scale
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell, rows * (cell + 12)), "white")
    pen = ImageDraw.Draw(grid)
    for n, (image, (colour, shape, background, _)) in enumerate(zip(images, cases)):
        x, y = (n % columns) * cell, (n // columns) * (cell + 12)
        grid.paste(image.resize((cell, cell), Image.Resampling.NEAREST), (x, y))
        pen.text((x + 2, y + cell), f"{colour} {shape} / {background}", fill="black")
    grid.save(path)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def img2img_kept(pipe, strengths=(0.3, 0.7), count: int = 16) -> dict[float, dict[str, float]]:
    """Init: a drawn training scene. Prompt: a different colour, shape and background.
    Reports the mean pixel change and how often the result reads as the init scene or as the prompt."""
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    i2i.set_progress_bar_config(disable=True)
    inits, prompts, scenes, asked = [], [], [], []
    for n in range(count):
        _, scene, _ = data.make_example(777, n)
        inits.append(data.draw(scene))
        scenes.append(scene)
        colours = [c for c in data.COLOURS if c not in (scene.colour, scene.background)]
        other_shape = data.SHAPES[(data.SHAPES.index(scene.shape) + 1) % len(data.SHAPES)]
        ask = (colours[n % len(colours)], other_shape, colours[(n + 3) % len(colours)])
        asked.append(ask)
        prompts.append(data.full_caption(*ask))
    results = {}
    for strength in strengths:
        outs = render(i2i, prompts, list(range(count)), image=inits, strength=strength)
        tally = Counter()
        for out, scene, (colour, shape, background) in zip(outs, scenes, asked):
            got = measure.read(out)
            tally["kept_colour"] += got.colour == scene.colour
            tally["kept_background"] += got.background == scene.background
            tally["kept_shape"] += got.shape == scene.shape
            tally["followed_colour"] += got.colour == colour
            tally["followed_background"] += got.background == background
            tally["followed_shape"] += got.shape == shape
        results[strength] = {
            "mean_abs_diff": float(np.mean([mean_abs_diff(o, i) for o, i in zip(outs, inits)])),
            **{k: v / count for k, v in tally.items()},
        }
    return results


def negative_effect(pipe, count: int = 48) -> dict[str, float]:
    """Prompt "a circle" with and without negative prompt "red": red pixel share and red shapes."""
    seeds = list(range(count))
    figures = {}
    for label, negative in (("without", None), ("with", "red")):
        images = render(pipe, ["a circle"] * count, seeds, negative=negative)
        figures[f"red_share_{label}"] = float(np.mean([measure.colour_share(im, "red") for im in images]))
        figures[f"red_shapes_{label}"] = sum(measure.read(im).colour == "red" for im in images) / count
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per prompt (48 prompts)")
    parser.add_argument("--grid", type=Path, help="save the default-settings renders as a grid PNG")
    parser.add_argument("--quick", action="store_true", help="accuracy at guidance 5 only")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    pipe = load(args.weights)
    cases = prompt_set(args.seeds)
    prompts = [data.full_caption(c, s, b) for c, s, b, _ in cases]
    seeds = [seed for *_, seed in cases]

    started = time.perf_counter()
    images = render(pipe, prompts, seeds)
    print(f"{len(cases)} renders, DPM++ 2M, {STEPS} steps, {data.IMAGE_SIZE}x{data.IMAGE_SIZE} "
          f"({time.perf_counter() - started:.1f}s, batches of 16)")
    accuracy = {GUIDANCE: score(images, cases)}
    if args.grid:
        save_grid(images[:: args.seeds], cases[:: args.seeds], args.grid)
    if not args.quick:
        accuracy[1.0] = score(render(pipe, prompts, seeds, guidance=1.0), cases)
    print("accuracy        " + "  ".join(f"{k:>10}" for k in accuracy[GUIDANCE]))
    for guidance, row in sorted(accuracy.items(), reverse=True):
        print(f"guidance {guidance:<4g}   " + "  ".join(f"{v:>10.1%}" for v in row.values()))
    if args.quick:
        return

    figures = negative_effect(pipe)
    print(f'negative prompt: "a circle", 48 seeds: red pixel share {figures["red_share_without"]:.1%} -> '
          f'{figures["red_share_with"]:.1%} with negative "red"; red shapes {figures["red_shapes_without"]:.0%} -> '
          f'{figures["red_shapes_with"]:.0%}')

    first = render(pipe, prompts[:1], seeds[:1])[0]
    second = render(pipe, prompts[:1], seeds[:1])[0]
    other = render(pipe, prompts[:1], [seeds[0] + 1])[0]
    same = np.array_equal(np.asarray(first), np.asarray(second))
    print(f"seed determinism: same seed -> identical pixels: {same}; "
          f"next seed differs by {mean_abs_diff(first, other):.1f}/255 on average")

    for strength, row in img2img_kept(pipe).items():
        print(f"img2img strength {strength}: mean pixel change {row['mean_abs_diff']:.1f}/255; "
              f"init kept: colour {row['kept_colour']:.0%}, background {row['kept_background']:.0%}, "
              f"shape {row['kept_shape']:.0%}; prompt followed: colour {row['followed_colour']:.0%}, "
              f"background {row['followed_background']:.0%}, shape {row['followed_shape']:.0%}")
    print("  (16 drawn init images; each prompt asks for a different colour, background and shape)")


if __name__ == "__main__":
    main()
