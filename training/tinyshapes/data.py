"""Procedural training data: coloured shapes on a background of another colour, plus a caption.

Everything is deterministic from a seed: ``make_example(seed, index, size)`` always draws the same picture.

A scene is one of three kinds (the canonical grammar of ``generation/vocabulary.py``):

- one shape, with an optional size word and position: "a large red circle in the top left on a blue background";
- two shapes of different colours: "a red circle and a blue square", "... left of ...", "... above ...";
- a count of one colour and shape: "two small blue squares on a white background".

Words and their pixel meaning (size bins, position slots, counts) come from ``training.tinyshapes.scenes``.
Images come in aspect-ratio buckets: the sizes ``/imagine`` renders for each aspect ratio it offers.
Shapes keep their true proportions in every bucket, sized relative to the shorter side.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from generation.flags import size_for_aspect_ratio
from training.tinyshapes.scenes import (
    AXIS_SLOTS, COLOURS, COUNTS, MARGIN, PALETTE, POSITION_SYNONYMS, POSITIONS, RELATIONS, SHAPES, SIZE_SYNONYMS,
    SIZES, UNSIZED, article,
)

IMAGE_SIZE = 64
# The aspect ratios /imagine offers and the sizes it renders them at.
ASPECT_RATIOS: tuple[str, ...] = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16")
BUCKETS: dict[str, tuple[int, int]] = {
    ratio: size_for_aspect_ratio(int(ratio.split(":")[0]), int(ratio.split(":")[1]), IMAGE_SIZE)
    for ratio in ASPECT_RATIOS
}
# Drawn at 4x and box-downscaled so edges are anti-aliased like a real image.
_SUPERSAMPLE = 4
_COLOUR_JITTER = 10
_GAP = 3.0  # pixels between two shapes of one scene
_PAIR_SIZE = (0.26, 0.40)
_MANY_SIZES = {"tiny": SIZES["tiny"], "small": SIZES["small"]}
_MANY_UNSIZED = (0.22, 0.34)
# Share of each scene kind in the data: one shape stays the bulk, as every old prompt is one.
_KINDS = (("one", 0.6), ("pair", 0.25), ("many", 0.15))
_POSITION_SHARE = 0.7


@dataclass(frozen=True)
class Thing:
    colour: str
    shape: str
    box: tuple[float, float, float, float]  # left, top, right, bottom in pixels of the final image

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class Scene:
    """What an image shows: the facts a caption and the pixel measures talk about."""

    things: tuple[Thing, ...]
    background: str
    kind: str = "one"  # "one", "pair" or "many"
    size: str | None = None  # the size word of a one- or many-shape caption
    position: str | None = None  # the position name of a one-shape caption
    relation: str | None = None  # "and", "left of" or "above" for a pair

    @property
    def colour(self) -> str:
        return self.things[0].colour

    @property
    def shape(self) -> str:
        return self.things[0].shape

    @property
    def count(self) -> int:
        return len(self.things)


def one_shape(colour: str, shape: str, background: str, size: tuple[int, int], centre: tuple[float, float],
              side: float) -> Scene:
    """A single shape of box side ``side`` centred at ``centre`` (for tests and img2img inits)."""
    half = side / 2
    return Scene((Thing(colour, shape, (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)),),
                 background)


# --- captions ------------------------------------------------------------------------------------


def subject(scene: Scene) -> str:
    """The canonical words for the shapes, without the background: "a large red circle in the top left"."""
    if scene.kind == "pair":
        first, second = (f"{article(t.colour)} {t.colour} {t.shape}" for t in scene.things)
        return f"{first} {scene.relation} {second}"
    size = f"{scene.size} " if scene.size else ""
    thing = scene.things[0]
    if scene.kind == "many":
        count = next(word for word, n in COUNTS.items() if n == scene.count)
        return f"{count} {size}{thing.colour} {thing.shape}s"
    words = f"{size}{thing.colour} {thing.shape}"
    position = f" {POSITIONS[scene.position][0]}" if scene.position else ""
    return f"{article(words)} {words}{position}"


def full_caption(scene: Scene) -> str:
    """The canonical prompt form, e.g. "a red circle on a blue background"."""
    return f"{subject(scene)} on {article(scene.background)} {scene.background} background"


def simple_caption(colour: str, shape: str, background: str) -> str:
    return f"{article(colour)} {colour} {shape} on {article(background)} {background} background"


# Shorter forms of a plain one-shape scene teach what single words mean, so "red circle" works as a
# prompt and "red" as a negative prompt. Weights favour the canonical form.
_PLAIN_TEMPLATES: tuple[tuple[str, int], ...] = (
    ("{full}", 8),
    ("{c} {s} on a {b} background", 2),
    ("{a_c} {c} {s} on {b}", 1),
    ("{c} {s} on {b}", 1),
    ("{a_c} {c} {s}", 2),
    ("{c} {s}", 2),
    ("a {s} on a {b} background", 1),
    ("{s} on {b}", 1),
    ("a {s}", 1),
    ("{s}", 1),
    ("{c}", 1),
    ("{c} on {b}", 1),
    ("a {b} background", 1),
)
# Scenes with a size, position, second shape or count: the canonical form, or it without "a ... background".
_RICH_TEMPLATES: tuple[tuple[str, int], ...] = (("{full}", 3), ("{subject}", 1))


def _synonyms(text: str, rng: random.Random) -> str:
    """Sometimes "big" for "large" and "center" for "centre", so both spellings mean the same."""
    for canonical_to_synonym in (SIZE_SYNONYMS, POSITION_SYNONYMS):
        for synonym, canonical in canonical_to_synonym.items():
            if canonical in text.split() and rng.random() < 0.3:
                text = " ".join(synonym if word == canonical else word for word in text.split())
    return text


def caption(scene: Scene, rng: random.Random) -> str:
    plain = scene.kind == "one" and scene.size is None and scene.position is None
    templates = _PLAIN_TEMPLATES if plain else _RICH_TEMPLATES
    template = rng.choices([t for t, _ in templates], weights=[w for _, w in templates])[0]
    text = template.format(full=full_caption(scene), subject=subject(scene), a_c=article(scene.colour),
                           c=scene.colour, s=scene.shape, b=scene.background)
    return _synonyms(text, rng)


# --- scenes --------------------------------------------------------------------------------------


def _wh(size) -> tuple[int, int]:
    """(width, height) from a square size or a (width, height) pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _place(free: float, fraction: float) -> float:
    return MARGIN + fraction * max(free, 0.0)


def _random_one(rng: random.Random, w: int, h: int, colour: str, background: str) -> Scene:
    shape = rng.choice(SHAPES)
    size = rng.choice(list(SIZES)) if rng.random() < 0.5 else None
    # Position is the hardest word to learn (the UNet has only its zero padding to tell where it is), so
    # it comes with more one-shape scenes than a size word does.
    position = rng.choice(list(POSITIONS)) if rng.random() < _POSITION_SHARE else None
    low, high = SIZES[size] if size else UNSIZED
    side = rng.uniform(low, high) * min(w, h)
    x_slot, y_slot = (POSITIONS[position][1], POSITIONS[position][2]) if position else (None, None)
    fx = rng.uniform(*AXIS_SLOTS[x_slot]) if x_slot else rng.random()
    fy = rng.uniform(*AXIS_SLOTS[y_slot]) if y_slot else rng.random()
    left, top = _place(w - side - 2 * MARGIN, fx), _place(h - side - 2 * MARGIN, fy)
    return Scene((Thing(colour, shape, (left, top, left + side, top + side)),), background, "one", size, position)


def _random_pair(rng: random.Random, w: int, h: int, colour: str, background: str) -> Scene:
    second_colour = rng.choice([c for c in COLOURS if c not in (colour, background)])
    shapes = (rng.choice(SHAPES), rng.choice(SHAPES))
    relation = rng.choice(RELATIONS)
    sides = [rng.uniform(*_PAIR_SIZE) * min(w, h) for _ in range(2)]
    # "left of" / "above" fix the order along an axis; "and" picks an axis and an order at random.
    horizontal = relation == "left of" or (relation == "and" and rng.random() < w / (w + h))
    along, across = (w, h) if horizontal else (h, w)
    free = along - sides[0] - sides[1] - _GAP - 2 * MARGIN
    if free < 0:  # too long for this axis: shrink both to fit
        scale = (along - _GAP - 2 * MARGIN) / (sides[0] + sides[1])
        sides, free = [s * scale for s in sides], 0.0
    # The free length splits at random into the space before, between and after the two shapes.
    cut_first, cut_second = sorted((rng.uniform(0, free), rng.uniform(0, free)))
    start, gap = MARGIN + cut_first, _GAP + cut_second - cut_first
    order = (0, 1) if relation != "and" or rng.random() < 0.5 else (1, 0)
    starts = (start, start + sides[order[0]] + gap)
    things = []
    for first_along, index in zip(starts, order):
        side = sides[index]
        cross = MARGIN + rng.random() * (across - side - 2 * MARGIN)
        box = (first_along, cross, first_along + side, cross + side) if horizontal else \
            (cross, first_along, cross + side, first_along + side)
        things.append((index, Thing((colour, second_colour)[index], shapes[index], box)))
    ordered = tuple(thing for _, thing in sorted(things, key=lambda pair: pair[0]))
    return Scene(ordered, background, "pair", relation=relation)


def _apart(box, others) -> bool:
    return all(box[2] + _GAP <= o[0] or o[2] + _GAP <= box[0] or box[3] + _GAP <= o[1] or o[3] + _GAP <= box[1]
               for o in others)


def _random_many(rng: random.Random, w: int, h: int, colour: str, background: str) -> Scene:
    shape = rng.choice(SHAPES)
    count = rng.choice(list(COUNTS.values()))
    size = rng.choice(list(_MANY_SIZES)) if rng.random() < 0.5 else None
    low, high = _MANY_SIZES[size] if size else _MANY_UNSIZED
    while True:  # rejection sampling: shapes that do not touch; small enough that it ends quickly
        boxes: list[tuple[float, float, float, float]] = []
        for _ in range(count):
            side = rng.uniform(low, high) * min(w, h)
            for _attempt in range(50):
                left = MARGIN + rng.random() * (w - side - 2 * MARGIN)
                top = MARGIN + rng.random() * (h - side - 2 * MARGIN)
                box = (left, top, left + side, top + side)
                if _apart(box, boxes):
                    boxes.append(box)
                    break
        if len(boxes) == count:
            break
    things = tuple(Thing(colour, shape, box) for box in boxes)
    return Scene(things, background, "many", size)


def random_scene(rng: random.Random, size=IMAGE_SIZE, kind: str | None = None) -> Scene:
    """A scene for an image of ``size`` (an int for a square, or (width, height))."""
    w, h = _wh(size)
    colour, background = rng.sample(COLOURS, 2)
    kind = kind or rng.choices([k for k, _ in _KINDS], weights=[p for _, p in _KINDS])[0]
    make = {"one": _random_one, "pair": _random_pair, "many": _random_many}[kind]
    return make(rng, w, h, colour, background)


# --- drawing -------------------------------------------------------------------------------------


def _jitter(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, c + rng.randint(-_COLOUR_JITTER, _COLOUR_JITTER))) for c in rgb)
    return r, g, b


def draw(scene: Scene, rng: random.Random | None = None, size=IMAGE_SIZE) -> Image.Image:
    """Render a scene; ``rng`` adds a little colour jitter (None draws exact palette colours).

    Outlines are exact polygons / ellipses at 4x, box-downscaled: corners stay sharp, edges are
    anti-aliased over one pixel."""
    w, h = _wh(size)
    bg = PALETTE[scene.background]
    if rng is not None:
        bg = _jitter(bg, rng)
    k = _SUPERSAMPLE
    canvas = Image.new("RGB", (w * k, h * k), bg)
    pen = ImageDraw.Draw(canvas)
    for thing in scene.things:
        fg = PALETTE[thing.colour] if rng is None else _jitter(PALETTE[thing.colour], rng)
        x0, y0, x1, y1 = (v * k for v in thing.box)
        if thing.shape == "circle":
            pen.ellipse([x0, y0, x1, y1], fill=fg)
        elif thing.shape == "square":
            pen.rectangle([x0, y0, x1, y1], fill=fg)
        elif thing.shape == "triangle":
            pen.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fg)
        else:
            raise ValueError(f"unknown shape {thing.shape!r}; expected one of {SHAPES}")
    return canvas.resize((w, h), Image.Resampling.BOX)


def make_example(seed: int, index: int, size=IMAGE_SIZE, kind: str | None = None) -> tuple[Image.Image, Scene, str]:
    """The ``index``-th training example of the dataset named by ``seed`` (at ``size``: int or (w, h))."""
    rng = random.Random(seed * 1_000_003 + index)
    scene = random_scene(rng, size, kind)
    image = draw(scene, rng, size)
    return image, scene, caption(scene, rng)


def make_batch(seed: int, start: int, count: int, size=IMAGE_SIZE):
    """Images as a float array in [-1, 1], shape (count, 3, height, width), with scenes and captions."""
    images, scenes, captions = [], [], []
    for index in range(start, start + count):
        image, scene, text = make_example(seed, index, size)
        images.append(np.asarray(image, dtype=np.float32))
        scenes.append(scene)
        captions.append(text)
    pixels = np.stack(images).transpose(0, 3, 1, 2) / 127.5 - 1.0
    return pixels, scenes, captions
