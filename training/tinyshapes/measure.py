"""Read a shapes image back from its pixels: background, and each shape's colour, shape, size and place.

The rules are deliberately simple (nearest palette colour, template overlap, bounding boxes) and are
validated on the training data itself: ``python -m training.tinyshapes.check_measures`` prints their
accuracy there. /describe (``generation/describe.py``) names what it sees with them at run time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from generation.shape_reading import colour_share, components, nearest_colours

from .scenes import PALETTE, position_name, size_word, slot

_NAMES = list(PALETTE)
_RGB = np.array([PALETTE[n] for n in _NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Shape:
    colour: str
    shape: str
    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive pixel indices)
    area: int

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class Reading:
    colour: str | None  # the largest shape's; None when no shape was found
    background: str
    shape: str | None
    foreground_share: float  # fraction of the image covered by the shapes
    shapes: tuple[Shape, ...] = ()  # largest first
    size: str | None = None  # the largest shape's size word
    position: str | None = None  # the largest shape's position name

    @property
    def count(self) -> int:
        return len(self.shapes)


def _templates(top: int, bottom: int, left: int, right: int):
    """Ideal masks of each shape filling the box (pixel centres inside the outline), box-sized."""
    ys, xs = np.mgrid[top : bottom + 1, left : right + 1] + 0.5
    y0, y1, x0, x1 = top, bottom + 1, left, right + 1
    cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
    depth = (ys - y0) / max(y1 - y0, 1e-6)  # 0 at the apex (top), 1 at the base
    return {
        "circle": ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1,
        "square": np.ones(ys.shape, dtype=bool),
        "triangle": np.abs(xs - cx) <= depth * rx,
    }


def _shape_of(region: np.ndarray) -> tuple[str, tuple[int, int, int, int]]:
    ys, xs = region[:, 0], region[:, 1]
    top, bottom, left, right = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    mask = np.zeros((bottom - top + 1, right - left + 1), dtype=bool)
    mask[ys - top, xs - left] = True
    boxes = _templates(top, bottom, left, right)
    overlap = {name: (mask & t).sum() / max((mask | t).sum(), 1) for name, t in boxes.items()}
    return max(overlap, key=lambda name: overlap[name]), (left, top, right, bottom)


def min_area(width: int, height: int) -> float:
    """Smallest region that counts as a shape: a third of the tiniest trained triangle."""
    return max(6.0, 0.15 * (0.16 * min(width, height)) ** 2)


def read(image: Image.Image) -> Reading:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    labels = nearest_colours(pixels)
    border = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    bg_index = Counter(border.tolist()).most_common(1)[0][0]
    background = _NAMES[bg_index]
    smallest = min_area(width, height)
    claimed = np.zeros(labels.shape, dtype=bool)
    found: list[Shape] = []
    # Colours by pixel count; each is segmented along its background -> colour axis, so anti-aliased
    # edges split evenly, and keeps the regions whose pixels are mostly that colour.
    for fg_index, pixel_count in Counter(labels[labels != bg_index].tolist()).most_common():
        if pixel_count < smallest:
            break
        bg_rgb, fg_rgb = _RGB[bg_index], _RGB[fg_index]
        axis = fg_rgb - bg_rgb
        alpha = ((pixels - bg_rgb) @ axis) / float(axis @ axis)
        for region in components((alpha > 0.5) & ~claimed):
            if len(region) < smallest:
                break
            ys, xs = region[:, 0], region[:, 1]
            if Counter(labels[ys, xs].tolist()).most_common(1)[0][0] != fg_index:
                continue
            shape, box = _shape_of(region)
            found.append(Shape(_NAMES[fg_index], shape, box, len(region)))
            claimed[max(box[1] - 1, 0) : box[3] + 2, max(box[0] - 1, 0) : box[2] + 2] |= True
    found.sort(key=lambda s: s.area, reverse=True)
    share = sum(s.area for s in found) / labels.size
    if not found:
        return Reading(None, background, None, share)
    lead = found[0]
    left, top, right, bottom = lead.box
    side = max(right - left + 1, bottom - top + 1) / min(width, height)
    position = position_name(slot(left, width - 1 - right), slot(top, height - 1 - bottom))
    return Reading(lead.colour, background, lead.shape, share, tuple(found), size_word(side), position)
