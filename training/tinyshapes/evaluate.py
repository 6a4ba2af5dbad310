"""Render a fixed set of prompts x seeds and check from the pixels whether the model follows them.

    python -m training.tinyshapes.evaluate [--weights PATH] [--grid generation/tinyshapes/grid.png]

Default settings: DPM++ 2M (the folder's scheduler), 20 steps, guidance 5, at every aspect-ratio
bucket /imagine renders (``data.BUCKETS``: 64x64, 72x56, ... 48x88). 120 canonical prompts per
aspect (plain, sized, placed, two-shape and counted scenes; ``prompt_set``), each render judged by
both independent pixel measures (``check_measures.judge``: colour, background, shape, size, position,
count, order), then guidance 1, the negative prompt, seeds, img2img and Upscale 2x.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image, ImageDraw

from training.tinyshapes import measure

from . import contour, data
from .build import WEIGHTS_DIR
from .check_measures import ATTRIBUTES, judge, tally

STEPS, GUIDANCE = 20, 5.0
UPSCALE_STRENGTH = 0.35  # generation/variants.py UPSCALE_STRENGTH


def load(weights: Path = WEIGHTS_DIR) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(weights)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, prompts, seeds, *, negative: str | None = None, guidance: float = GUIDANCE,
           steps: int = STEPS, batch: int | None = None, **kwargs) -> list[Image.Image]:
    """One image per (prompt, seed); each image gets its own freshly seeded generator (on the CPU, so
    a seed draws the same noise on any device)."""
    batch = batch or (64 if pipe.device.type == "cuda" else 16)
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


_NOWHERE = (0.0, 0.0, 0.0, 0.0)  # evaluation scenes name what to draw, not where: boxes unused


def prompt_set(seeds_per_prompt: int = 1) -> list[tuple[data.Scene, int]]:
    """120 scenes x seeds, deterministic: 24 plain (every colour x shape), 24 sized (every size x shape,
    two colours each), 36 placed (every position, 4 each), 18 pairs (6 per relation) and 18 counts."""
    colours, shapes, n = data.COLOURS, data.SHAPES, len(data.COLOURS)
    scenes: list[data.Scene] = []

    def one(i: int, shape: str, **kwargs) -> data.Scene:
        colour = colours[i % n]
        background = colours[(i + 1 + i // n + 3 * (i % 2)) % n]
        background = background if background != colour else colours[(i + 2) % n]
        return data.Scene((data.Thing(colour, shape, _NOWHERE),), background, **kwargs)

    for i in range(24):
        scenes.append(one(i, shapes[i % 3]))
    for i in range(24):
        scenes.append(one(i + 3, shapes[(i // 4) % 3], size=list(data.SIZES)[i % 4]))
    for i in range(36):
        scenes.append(one(i + 5, shapes[i % 3], position=list(data.POSITIONS)[i % 9]))
    for i in range(18):
        first, second = colours[i % n], colours[(i + 3) % n]
        background = colours[(i + 5 + i // n) % n]
        background = background if background not in (first, second) else colours[(i + 6) % n]
        things = (data.Thing(first, shapes[i % 3], _NOWHERE), data.Thing(second, shapes[(i + 1 + i // 9) % 3], _NOWHERE))
        scenes.append(data.Scene(things, background, "pair", relation=data.RELATIONS[i % 3]))
    for i in range(18):
        counted = one(i + 7, shapes[i % 3])
        count = list(data.COUNTS.values())[i % 2]
        scenes.append(data.Scene(counted.things * count, counted.background, "many",
                                 size=(None, "tiny", "small")[i % 3]))
    return [(scene, 1000 * s + k) for k, scene in enumerate(scenes) for s in range(seeds_per_prompt)]


def score(images, cases) -> dict[str, float]:
    pairs = [(image, scene) for image, (scene, _) in zip(images, cases)]
    workers = min(os.cpu_count() or 1, 16)
    if workers <= 2 or len(pairs) < 32:
        return tally(judge(image, scene) for image, scene in pairs)
    import multiprocessing

    # The measures are pure Python loops: on the GPU machine's 16 cores they keep up with the renders.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return tally(pool.starmap(judge, pairs, chunksize=4))


def grid_columns(cases, columns: int = 12) -> list[int]:
    """Indices into ``cases`` of ``columns`` scenes: plain, sized, placed, pairs and counts."""
    starts, per_kind = (0, 24, 48, 84, 102), (2, 3, 3, 2, 2)
    picks = [start + k * 7 for start, count in zip(starts, per_kind) for k in range(count)]
    return [i for i in picks if i < len(cases)][:columns]


def save_grid(rows, path: Path, scale: int = 2) -> None:
    """``rows``: (label, images, scenes) per aspect ratio; one row each, images centred in equal cells."""
    side = max(max(im.size) for _, images, _ in rows for im in images) * scale
    label_w, cell_w, cell_h = 70, max(side + 4, 150), side + 26
    columns = max(len(images) for _, images, _ in rows)
    grid = Image.new("RGB", (label_w + columns * cell_w, len(rows) * cell_h), "white")
    pen = ImageDraw.Draw(grid)
    for r, (label, images, scenes) in enumerate(rows):
        y = r * cell_h
        pen.text((4, y + side // 2 - 6), label, fill="black")
        for n, (image, scene) in enumerate(zip(images, scenes)):
            w, h = image.width * scale, image.height * scale
            x = label_w + n * cell_w
            grid.paste(image.resize((w, h), Image.Resampling.NEAREST), (x + (cell_w - w) // 2, y + (side - h) // 2))
            words = data.subject(scene).split()
            pen.text((x + 2, y + side), " ".join(words[: len(words) // 2 + 1]), fill="black")
            pen.text((x + 2, y + side + 11), " ".join(words[len(words) // 2 + 1 :]) + f" / {scene.background}", fill="black")
    grid.save(path)


def contact_sheet(rows: list[list[Image.Image]], zoom: int = 1, gap: int = 2) -> Image.Image:
    """The images in a table on white, each scaled ``zoom`` times (nearest) in an equal cell."""
    cell_w = max(im.width for row in rows for im in row) * zoom + gap
    cell_h = max(im.height for row in rows for im in row) * zoom + gap
    sheet = Image.new("RGB", (cell_w * max(map(len, rows)), cell_h * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, im in enumerate(row):
            sheet.paste(im.resize((im.width * zoom, im.height * zoom), Image.Resampling.NEAREST), (x * cell_w, y * cell_h))
    return sheet


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def img2img_kept(pipe, strengths=(0.3, 0.7), count: int = 16) -> dict[float, dict[str, float]]:
    """Init: a drawn training scene. Prompt: a different colour, shape and background.
    Reports the mean pixel change and how often the result reads as the init scene or as the prompt."""
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    i2i.set_progress_bar_config(disable=True)
    inits, prompts, scenes, asked = [], [], [], []
    for n in range(count):
        _, scene, _ = data.make_example(777, n, kind="one")
        inits.append(data.draw(scene))
        scenes.append(scene)
        colours = [c for c in data.COLOURS if c not in (scene.colour, scene.background)]
        other_shape = data.SHAPES[(data.SHAPES.index(scene.shape) + 1) % len(data.SHAPES)]
        ask = (colours[n % len(colours)], other_shape, colours[(n + 3) % len(colours)])
        asked.append(ask)
        prompts.append(data.simple_caption(*ask))
    results = {}
    for strength in strengths:
        outs = render(i2i, prompts, list(range(count)), image=inits, strength=strength)
        tally: Counter[str] = Counter()
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


def edge_width(image: Image.Image) -> float:
    """Blur of the shape's outline in pixels: pixels part-way (10-90 %) between background and
    foreground colour, divided by the outline length (perimeter of the shape's convex hull).
    A crisp anti-aliased drawing is about 1; a 2x Lanczos resize of one about 2."""
    got = measure.read(image)
    if got.colour is None:
        return float("nan")
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    bg, fg = np.array(data.PALETTE[got.background], np.float32), np.array(data.PALETTE[got.colour], np.float32)
    axis = fg - bg
    alpha = ((pixels - bg) @ axis) / float(axis @ axis)
    mask = contour.segment(image)
    ys, xs = np.nonzero(mask)
    if len(ys) < 10:
        return float("nan")
    hull = contour.convex_hull(np.stack([xs, ys], 1).astype(np.float64))
    _, perimeter = contour._area_perimeter(hull)
    return float(((alpha > 0.1) & (alpha < 0.9)).sum() / max(perimeter, 1.0))


def upscale(pipe, images, prompts, seeds, strength: float = UPSCALE_STRENGTH, factor: int = 2):
    """The bot's Upscale 2x: Lanczos resize, then img2img at ``strength`` with the same prompt and seed."""
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    i2i.set_progress_bar_config(disable=True)
    outs = []
    for image, prompt, seed in zip(images, prompts, seeds):
        big = image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
        outs += render(i2i, [prompt], [seed], image=[big], strength=strength)
    return outs


def upscale_check(pipe, cases, strength: float = UPSCALE_STRENGTH, ratios=data.ASPECT_RATIOS,
                  per_aspect: dict | None = None) -> dict[str, dict[str, float]]:
    """Upscale the renders of the 24 plain prompts (every colour x shape) at every aspect; reads with both
    measures and the outline blur of the result, of a plain Lanczos resize, and of the 1x render."""
    picks = [i for i, (scene, _) in enumerate(cases) if scene.kind == "one" and not scene.size and not scene.position][:24]
    sub_cases = [cases[i] for i in picks]
    prompts = [data.full_caption(scene) for scene, _ in sub_cases]
    seeds = [seed for _, seed in sub_cases]
    results = {}
    for ratio in ratios:
        if per_aspect and ratio in per_aspect:
            sub_images = [per_aspect[ratio][i] for i in picks]
        else:
            w, h = data.BUCKETS[ratio]
            sub_images = render(pipe, prompts, seeds, width=w, height=h)
        outs = upscale(pipe, sub_images, prompts, seeds, strength)
        row = score(outs, sub_cases)
        row["edge 1x"] = float(np.nanmean([edge_width(im) for im in sub_images]))
        row["edge resize"] = float(np.nanmean([edge_width(im.resize((im.width * 2, im.height * 2), Image.Resampling.LANCZOS)) for im in sub_images]))
        row["edge upscaled"] = float(np.nanmean([edge_width(im) for im in outs]))
        results[ratio] = row
        print(f"upscale {ratio}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    return results


def print_table(title: str, table: dict[str, dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for row in table.values() for k in row))
    keys = [k for k in ATTRIBUTES if k in keys] + [k for k in keys if k not in ATTRIBUTES]
    print(title)
    print(f"{'aspect':>12}  " + " ".join(f"{k:>10}" for k in keys))
    for ratio, row in table.items():
        w, h = data.BUCKETS.get(ratio, (0, 0))
        label = f"{ratio} {w}x{h}" if w else ratio
        print(f"{label:>12}  " + " ".join(f"{row.get(k, float('nan')):>10.1%}" if "edge" not in k
                                         else f"{row[k]:>10.2f}" for k in keys))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per prompt (120 prompts)")
    parser.add_argument("--aspects", default=",".join(data.ASPECT_RATIOS), help="comma-separated, e.g. 1:1,16:9")
    parser.add_argument("--grid", type=Path, help="save default-settings renders of every aspect as a grid PNG")
    parser.add_argument("--quick", action="store_true", help="per-aspect accuracy at guidance 5 only")
    parser.add_argument("--extras-only", action="store_true", help="skip the per-aspect table: guidance 1, "
                        "negative prompt, seeds, img2img and upscale only (to run next to --quick)")
    parser.add_argument("--upscale-strength", type=float, default=UPSCALE_STRENGTH)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--limit", type=int, help="only the first N prompts (a smoke test)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load(args.weights).to(args.device)
    cases = prompt_set(args.seeds)[: args.limit]
    prompts = [data.full_caption(scene) for scene, _ in cases]
    seeds = [seed for _, seed in cases]

    per_aspect, accuracy, rows = {}, {}, []
    for ratio in [] if args.extras_only else args.aspects.split(","):
        w, h = data.BUCKETS[ratio]
        started = time.perf_counter()
        images = render(pipe, prompts, seeds, width=w, height=h)
        per_aspect[ratio], accuracy[ratio] = images, score(images, cases)
        print(f"{ratio} {w}x{h}: {len(cases)} renders in {time.perf_counter() - started:.1f}s: "
              + ", ".join(f"{k} {v:.1%}" for k, v in accuracy[ratio].items()), flush=True)
        picks = grid_columns(cases)
        rows.append((f"{ratio}\n{w}x{h}", [images[i] for i in picks], [cases[i][0] for i in picks]))
    if args.grid and rows:
        save_grid(rows, args.grid)
    if accuracy:
        print()
        print_table(f"{len(cases)} renders per aspect ratio, DPM++ 2M, {STEPS} steps, guidance {GUIDANCE:g} "
                    "(_m = template overlap measure, _c = corner-count measure)", accuracy)
        print(f"lowest: {min(v for row in accuracy.values() for v in row.values()):.1%}")
    if args.quick:
        return

    print()
    g1 = score(render(pipe, prompts, seeds, guidance=1.0), cases)
    print("64x64 at guidance 1: " + ", ".join(f"{k} {v:.1%}" for k, v in g1.items()))

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

    print()
    print_table(f"Upscale 2x (Lanczos + img2img strength {args.upscale_strength:g}) of 24 renders per aspect; "
                "edge = outline blur in px",
                upscale_check(pipe, cases, args.upscale_strength, args.aspects.split(","), per_aspect))


if __name__ == "__main__":
    main()
