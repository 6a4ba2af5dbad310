"""Procedural training data: one coloured shape on a background of another colour, plus a caption.

Everything is deterministic from a seed: ``make_example(seed, index)`` always draws the same picture.

Images come in aspect-ratio buckets: the sizes ``/imagine`` renders for each aspect ratio it offers
(``generation.flags.size_for_aspect_ratio(w, h, 64)``). Shapes keep their true proportions in every
bucket (a circle is a circle, a square is a square), sized relative to the shorter side.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..flags import size_for_aspect_ratio

IMAGE_SIZE = 64
# The aspect ratios /imagine offers (bot/cogs/imagine.py ASPECT_RATIOS) and the sizes it renders them at.
ASPECT_RATIOS: tuple[str, ...] = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16")
BUCKETS: dict[str, tuple[int, int]] = {
    ratio: size_for_aspect_ratio(int(ratio.split(":")[0]), int(ratio.split(":")[1]), IMAGE_SIZE)
    for ratio in ASPECT_RATIOS
}
# Drawn at 4x and box-downscaled so edges are anti-aliased like a real image.
_SUPERSAMPLE = 4
_COLOUR_JITTER = 10

# Eight colours far apart in RGB, so a nearest-colour rule can tell them apart.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (130, 40, 170),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Scene:
    """What an image shows: the facts a caption and the pixel measure talk about."""

    colour: str
    shape: str
    background: str
    centre: tuple[float, float]  # in pixels of the final image
    size: float  # width (= height) of the shape's bounding box, in pixels


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def full_caption(colour: str, shape: str, background: str) -> str:
    """The canonical prompt form, e.g. "a red circle on a blue background"."""
    return f"{article(colour)} {colour} {shape} on a {background} background"


# Shorter forms teach the model what single words mean, so "red circle" works as a prompt and
# "red" works as a negative prompt. Weights favour the canonical form.
_TEMPLATES: tuple[tuple[str, int], ...] = (
    ("{a_c} {c} {s} on a {b} background", 8),
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
_TEMPLATE_TEXTS = [t for t, _ in _TEMPLATES]
_TEMPLATE_WEIGHTS = [w for _, w in _TEMPLATES]


def caption(scene: Scene, rng: random.Random) -> str:
    template = rng.choices(_TEMPLATE_TEXTS, weights=_TEMPLATE_WEIGHTS)[0]
    return template.format(
        a_c=article(scene.colour), c=scene.colour, s=scene.shape, b=scene.background
    )


def _wh(size) -> tuple[int, int]:
    """(width, height) from a square size or a (width, height) pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def random_scene(rng: random.Random, size=IMAGE_SIZE) -> Scene:
    """A scene for an image of ``size`` (an int for a square, or (width, height))."""
    w, h = _wh(size)
    colour, background = rng.sample(COLOURS, 2)
    shape = rng.choice(SHAPES)
    # Shape size relative to the shorter side: the shape is as square as in a 64x64 image.
    width = rng.uniform(0.38, 0.75) * min(w, h)
    margin = width / 2 + 2
    centre = (rng.uniform(margin, w - margin), rng.uniform(margin, h - margin))
    return Scene(colour, shape, background, centre, width)


def _jitter(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, c + rng.randint(-_COLOUR_JITTER, _COLOUR_JITTER))) for c in rgb)
    return r, g, b


def draw(scene: Scene, rng: random.Random | None = None, size=IMAGE_SIZE) -> Image.Image:
    """Render a scene; ``rng`` adds a little colour jitter (None draws exact palette colours).

    Outlines are exact polygons / ellipses at 4x, box-downscaled: corners stay sharp, edges are
    anti-aliased over one pixel."""
    w, h = _wh(size)
    fg, bg = PALETTE[scene.colour], PALETTE[scene.background]
    if rng is not None:
        fg, bg = _jitter(fg, rng), _jitter(bg, rng)
    k = _SUPERSAMPLE
    canvas = Image.new("RGB", (w * k, h * k), bg)
    pen = ImageDraw.Draw(canvas)
    cx, cy = scene.centre[0] * k, scene.centre[1] * k
    half = scene.size * k / 2
    if scene.shape == "circle":
        pen.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fg)
    elif scene.shape == "square":
        pen.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fg)
    elif scene.shape == "triangle":
        pen.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fg)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}; expected one of {SHAPES}")
    return canvas.resize((w, h), Image.Resampling.BOX)


def make_example(seed: int, index: int, size=IMAGE_SIZE) -> tuple[Image.Image, Scene, str]:
    """The ``index``-th training example of the dataset named by ``seed`` (at ``size``: int or (w, h))."""
    rng = random.Random(seed * 1_000_003 + index)
    scene = random_scene(rng, size)
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
