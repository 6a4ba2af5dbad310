"""What the shipped model draws, in numbers: its palette, shapes, size bins, position slots and counts.

One declaration shared by the training data (``training/tinyshapes/data.py`` draws scenes from it) and
the pixel measure (``measure.py`` reads them back for /describe), so the words in a caption and the
pixels they stand for cannot drift apart. ``weights/vocabulary.json`` lists the same words for the
conversation interpreter (a test checks the two agree).
"""

from __future__ import annotations

# The palette and shapes are the product's (the /describe reader's), declared once there.
from generation.shape_reading import PALETTE, SHAPES

COLOURS: tuple[str, ...] = tuple(PALETTE)

# Size words: the shape's bounding-box side as a fraction of the image's shorter side. The bins leave
# gaps, so a measure can tell them apart; without a size word a shape is 0.38-0.72 (medium to large).
SIZES: dict[str, tuple[float, float]] = {
    "tiny": (0.19, 0.24),
    "small": (0.30, 0.37),
    "medium": (0.43, 0.52),
    "large": (0.61, 0.70),
}
SIZE_SYNONYMS: dict[str, str] = {"big": "large"}
UNSIZED = (0.38, 0.72)
# Reading a size back: the midpoints of the gaps between the bins.
SIZE_THRESHOLDS: tuple[tuple[float, str], ...] = ((0.265, "tiny"), (0.40, "small"), (0.565, "medium"), (9.9, "large"))

# Position slots: where the shape sits along each axis, as a fraction of the free space between the
# image's edges (0 = against the left/top margin, 1 = against the right/bottom one).
AXIS_SLOTS: dict[str, tuple[float, float]] = {"low": (0.0, 0.1), "mid": (0.42, 0.58), "high": (0.9, 1.0)}
# name -> (phrase written in prompts, x slot, y slot)
POSITIONS: dict[str, tuple[str, str, str]] = {
    "centre": ("in the centre", "mid", "mid"),
    "left": ("on the left", "low", "mid"),
    "right": ("on the right", "high", "mid"),
    "top": ("at the top", "mid", "low"),
    "bottom": ("at the bottom", "mid", "high"),
    "top left": ("in the top left", "low", "low"),
    "top right": ("in the top right", "high", "low"),
    "bottom left": ("in the bottom left", "low", "high"),
    "bottom right": ("in the bottom right", "high", "high"),
}
POSITION_SYNONYMS: dict[str, str] = {"center": "centre"}
# Reading a slot back from the gaps on either side: gap_before / (gap_before + gap_after).
SLOT_THRESHOLDS: tuple[tuple[float, str], ...] = ((0.3, "low"), (0.7, "mid"), (9.9, "high"))
MARGIN = 1.5  # pixels kept clear between a shape and the image edge

COUNTS: dict[str, int] = {"two": 2, "three": 3}
RELATIONS: tuple[str, ...] = ("and", "left of", "above")


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def size_word(fraction: float) -> str:
    """The size bin of a shape whose box side is ``fraction`` of the image's shorter side."""
    return next(name for limit, name in SIZE_THRESHOLDS if fraction < limit)


def slot(gap_before: float, gap_after: float) -> str:
    share = gap_before / max(gap_before + gap_after, 1e-6)
    return next(name for limit, name in SLOT_THRESHOLDS if share < limit)


def position_name(x_slot: str, y_slot: str) -> str:
    return next(name for name, (_, x, y) in POSITIONS.items() if (x, y) == (x_slot, y_slot))
