"""Outpainting quality with the shipped model: does Zoom Out / Pan / Make Square extend the scene?

    OMP_NUM_THREADS=1 python -m benchmarks.outpaint_quality [--sources 48] [--steps 10] [--save DIR] [--showcase DIR]

At the default 10 steps (the edits run 3 of them: strength 0.5 on SD's schedule is 0.353 on the shipped
model's, `generation.outpaint.schedule_strength`) it took 5–8 min on the shared 2-core dev machine under a
load of 4–6, one thread (13 min under a load of ~15). `--steps 20` (the bot's default) takes twice as long.

Renders `--sources` pictures with the shipped model (every colour × shape on two backgrounds, several
seeds, square and 16:9), then every edit of each through the Renderer, exactly as the bot's buttons
record it (`generation.editing.edit_request`): Zoom Out 2×, 1.5×, Custom Zoom 1.25, Pan ⬅️ ➡️ ⬆️ ⬇️ and
Make Square (on the 16:9 sources). Per edit it prints, over its renders:

- clean: the share of renders whose new area holds no object (`new_area_objects` == 0);
- seam: the gradient across the seam between the source and the new area divided by the same gradient
  across lines just inside the source (1 = the seam is as smooth as the picture itself; `seam_ratio`);
- dark: dark pixels near the corners of the old frame, in all renders together (`dark_corner_pixels`).

The measures are in `training.tinyshapes.outpaint_measure` (the tests use the same ones).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import torch

from generation import GenerationRequest, Limits, Renderer
from generation.editing import edit_request
from training.tinyshapes.outpaint_measure import OutpaintReading, read_outpaint
from training.tinyshapes import data

EDITS: dict[str, dict] = {
    "zoom 2×": {"mode": "zoom", "factor": 2.0},
    "zoom 1.5×": {"mode": "zoom", "factor": 1.5},
    "custom zoom 1.25": {"mode": "zoom", "factor": 1.25},
    "pan left": {"mode": "pan", "direction": "left"},
    "pan right": {"mode": "pan", "direction": "right"},
    "pan up": {"mode": "pan", "direction": "up"},
    "pan down": {"mode": "pan", "direction": "down"},
    "make square": {"mode": "square"},
}


def source_cases(count: int) -> list[tuple[str, int, tuple[int, int]]]:
    """(prompt, seed, size): colours × shapes on two backgrounds, alternately square and 16:9."""
    cases: list[tuple[str, int, tuple[int, int]]] = []
    index = 0
    while len(cases) < count:
        colour = data.COLOURS[index % len(data.COLOURS)]
        shape = data.SHAPES[index % len(data.SHAPES)]
        background = data.COLOURS[(index * 3 + 1 + index // len(data.COLOURS)) % len(data.COLOURS)]
        if background == colour:
            background = data.COLOURS[(data.COLOURS.index(colour) + 4) % len(data.COLOURS)]
        size = data.BUCKETS["1:1"] if index % 2 == 0 else data.BUCKETS["16:9"]
        cases.append((f"{data.article(colour)} {colour} {shape} on {data.article(background)} {background} background",
                      100 + index, size))
        index += 1
    return cases


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_edits(renderer: Renderer, sources: int, steps: int, save: Path | None = None,
                 ) -> dict[str, list[OutpaintReading]]:
    limits = Limits()
    readings: dict[str, list[OutpaintReading]] = {name: [] for name in EDITS}
    for number, (prompt, seed, (width, height)) in enumerate(source_cases(sources)):
        base = GenerationRequest(prompt, width=width, height=height, seed=seed, num_inference_steps=steps)
        source = renderer.render(base).images[0].image.convert("RGB")
        for name, edit in EDITS.items():
            if edit["mode"] == "square" and width == height:
                continue
            options = {key: value for key, value in edit.items() if key != "mode"}
            request = edit_request(base, _png(source), seed, edit["mode"], limits, **options)
            result = renderer.render(request).images[0].image.convert("RGB")
            readings[name].append(read_outpaint(source, result, request))
            if save is not None and number < 8:
                save.mkdir(parents=True, exist_ok=True)
                result.save(save / f"{number:02d}-{name.replace(' ', '-')}.png")
        if save is not None and number < 8:
            source.save(save / f"{number:02d}-source.png")
        if (number + 1) % 8 == 0 and number + 1 < sources:  # partial figures, in case the run is cut short
            print(f"after {number + 1} sources:", *summary(readings), sep="\n", flush=True)
    return readings


# The README's editing picture (Zoom Out 2× of seed 7), the 88×48 green triangle, and two benchmark
# sources that got a second subject or blob before the strength was converted (tests/generation/test_outpaint.py).
SHOWCASE = [("a red circle on a blue background", 7, (64, 64), ["zoom 2×"]),
            ("a green triangle on a white background", 3, (88, 48),
             ["zoom 2×", "zoom 1.5×", "custom zoom 1.25", "pan down", "make square"]),
            ("an orange circle on a purple background", 109, (88, 48), ["zoom 2×", "make square"]),
            ("a purple triangle on a green background", 129, (88, 48), ["zoom 1.5×", "pan down"])]


def showcase(renderer: Renderer, steps: int, out: Path) -> list[str]:
    """Render the showcase edits into `out` (one PNG per picture) and return their measures."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, (prompt, seed, (width, height), names) in enumerate(SHOWCASE):
        base = GenerationRequest(prompt, width=width, height=height, seed=seed, num_inference_steps=steps)
        source = renderer.render(base).images[0].image.convert("RGB")
        source.save(out / f"{number}-source.png")
        for name in names:
            edit = EDITS[name]
            options = {key: value for key, value in edit.items() if key != "mode"}
            request = edit_request(base, _png(source), seed, edit["mode"], Limits(), **options)
            result = renderer.render(request).images[0].image.convert("RGB")
            result.save(out / f"{number}-{name.replace(' ', '-')}.png")
            lines.append(f"{prompt!r} seed {seed}, {name}: {read_outpaint(source, result, request)}")
    return lines


def summary(readings: dict[str, list[OutpaintReading]]) -> list[str]:
    lines = [f"{'edit':<17} {'renders':>7} {'clean':>7} {'seam ratio (median, max)':>25} {'dark corner px':>15}"]
    for name, items in readings.items():
        if not items:
            continue
        clean = sum(item.new_area_objects == 0 for item in items) / len(items)
        ratios = [item.seam_ratio for item in items]
        dark = sum(item.dark_corner_pixels for item in items)
        lines.append(f"{name:<17} {len(items):>7} {clean:>7.1%} {statistics.median(ratios):>14.2f}, {max(ratios):>8.2f} "
                     f"{dark:>15}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=48, help="source pictures (each gets every edit)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--save", type=Path, help="save the first 8 sources and their edits here")
    parser.add_argument("--showcase", type=Path, help="only render the README's and the issue's cases into this folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    renderer = Renderer("tinyshapes", device="cpu", dtype="float32", cpu_threads=1)
    if args.showcase is not None:
        print("\n".join(showcase(renderer, args.steps, args.showcase)))
        return
    started = time.perf_counter()
    readings = render_edits(renderer, args.sources, args.steps, args.save)
    print("\n".join(summary(readings)))
    print(f"({time.perf_counter() - started:.0f} s, {args.steps} steps, one thread)")


if __name__ == "__main__":
    main()
