"""Judge an image against the scene it should show, by both pixel measures, attribute by attribute.

``judge(image, scene)`` says for every attribute the scene pins down whether each measure reads it
right: colour and background (``measure`` only: the corner count has no palette), shape, size,
position, count and, for "left of" / "above" pairs, the order. ``evaluate.py`` judges renders with it;
run this module to validate both measures on training images, where the truth is known:

    python -m training.tinyshapes.check_measures [--count 600]
"""

from __future__ import annotations

import argparse
from collections import Counter

from PIL import Image

from training.tinyshapes import measure

from . import contour, data

# Columns of the per-attribute tables; _m = template-overlap measure, _c = corner-count measure.
ATTRIBUTES = ("colour", "background", "shape_m", "shape_c", "size_m", "size_c", "position_m", "position_c",
              "count_m", "count_c", "order_m", "order_c")


def _order_key(relation: str | None):
    if relation == "above":
        return lambda centre: (centre[1], centre[0])
    return lambda centre: (centre[0], centre[1])


def judge(image: Image.Image, scene: data.Scene) -> dict[str, bool]:
    reading, regions = measure.read(image), contour.read_scene(image)
    verdict = {"background": reading.background == scene.background,
               "count_m": reading.count == scene.count, "count_c": regions.count == scene.count}
    wanted_shapes = sorted(thing.shape for thing in scene.things)
    verdict["shape_c"] = sorted(region.shape for region in regions.regions) == wanted_shapes
    if scene.kind == "pair":
        by_colour = {shape.colour: shape for shape in reading.shapes}
        verdict["colour"] = set(by_colour) == {thing.colour for thing in scene.things}
        verdict["shape_m"] = all(thing.colour in by_colour and by_colour[thing.colour].shape == thing.shape
                                 for thing in scene.things)
        if scene.relation in ("left of", "above"):
            key = _order_key(scene.relation)
            first, second = scene.things
            verdict["order_m"] = (first.colour in by_colour and second.colour in by_colour
                                  and key(by_colour[first.colour].centre) < key(by_colour[second.colour].centre))
            if first.shape != second.shape:  # the corner count tells the two apart by shape only
                ordered = sorted(regions.regions, key=lambda r: key(((r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2)))
                verdict["order_c"] = [r.shape for r in ordered] == [first.shape, second.shape]
    else:
        verdict["colour"] = bool(reading.shapes) and all(shape.colour == scene.colour for shape in reading.shapes)
        verdict["shape_m"] = bool(reading.shapes) and all(shape.shape == scene.shape for shape in reading.shapes)
    if scene.size is not None:
        verdict["size_m"], verdict["size_c"] = reading.size == scene.size, regions.size == scene.size
    if scene.position is not None:
        verdict["position_m"], verdict["position_c"] = reading.position == scene.position, regions.position == scene.position
    return verdict


def tally(verdicts) -> dict[str, float]:
    """Share right per attribute, over the images where it applies (NaN-free: absent attributes omitted)."""
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for verdict in verdicts:
        for key, ok in verdict.items():
            totals[key] += 1
            hits[key] += ok
    return {key: hits[key] / totals[key] for key in ATTRIBUTES if totals[key]}


def validate(size, count: int, seed: int = 12345) -> tuple[dict[str, float], list[str]]:
    verdicts, misses = [], []
    for index in range(count):
        image, scene, text = data.make_example(seed, index, size)
        verdict = judge(image, scene)
        verdicts.append(verdict)
        misses += [f"{index} {key}: {text}" for key, ok in verdict.items() if not ok]
    return tally(verdicts), misses


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Both pixel measures, per attribute, on training images of every bucket.")
    parser.add_argument("--count", type=int, default=600, help="training images per aspect-ratio bucket")
    parser.add_argument("--aspects", default=",".join(data.ASPECT_RATIOS))
    args = parser.parse_args(argv)
    print(f"{'aspect':>12}  " + " ".join(f"{k:>10}" for k in ATTRIBUTES))
    worst = 1.0
    for ratio in args.aspects.split(","):
        w, h = data.BUCKETS[ratio]
        shares, misses = validate((w, h), args.count)
        worst = min(worst, *shares.values())
        print(f"{ratio + ' ' + str(w) + 'x' + str(h):>12}  " + " ".join(f"{shares.get(k, float('nan')):>10.1%}" for k in ATTRIBUTES),
              flush=True)
        for miss in misses[:3]:
            print(f"{'':>14}miss {miss}")
    print(f"lowest: {worst:.1%} (of {args.count} training images per aspect)")


if __name__ == "__main__":
    main()
