"""The "shapes" describer's eyes: read one shape on one background back from a picture's pixels.

Nearest palette colour per pixel, the border's colour as the background, the largest region of the
most common other colour as the shape, and the shape that best overlaps it (circle, square, triangle).
The palette and shapes are the shipped model's (its folder's vocabulary.json names the same words; a
test checks they agree). This is product code: the training data draws with these colours
(training imports them from here), never the other way round.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

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
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

_NAMES = list(PALETTE)
_RGB = np.array([PALETTE[n] for n in _NAMES], dtype=np.float32)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class Reading:
    colour: str | None  # None when no foreground shape was found
    background: str
    shape: str | None
    foreground_share: float  # fraction of the image covered by the shape


def nearest_colours(pixels: np.ndarray) -> np.ndarray:
    """Palette index of the nearest colour, per pixel of an (..., 3) array."""
    distance = ((pixels[..., None, :] - _RGB) ** 2).sum(-1)
    return distance.argmin(-1)


def colour_share(image: Image.Image, colour: str) -> float:
    """Fraction of pixels whose nearest palette colour is ``colour``."""
    labels = nearest_colours(np.asarray(image.convert("RGB"), dtype=np.float32))
    return float((labels == _NAMES.index(colour)).mean())


def components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected regions of ``mask`` as (n, 2) arrays of (y, x), largest first (ties in scan order)."""
    height, width = mask.shape
    seen = np.zeros_like(mask)
    found = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        component, queue = [], deque([start])
        while queue:
            y, x = queue.popleft()
            component.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        found.append(np.array(component))
    return sorted(found, key=len, reverse=True)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    found = components(mask)
    if found:
        out[found[0][:, 0], found[0][:, 1]] = True
    return out


def _templates(top: int, bottom: int, left: int, right: int, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Ideal masks of each shape filling the box (pixel centres inside the outline)."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    y0, y1, x0, x1 = top, bottom + 1, left, right + 1
    cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
    inside = (ys >= y0) & (ys <= y1) & (xs >= x0) & (xs <= x1)
    depth = (ys - y0) / max(y1 - y0, 1e-6)  # 0 at the apex (top), 1 at the base
    return {
        "circle": ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1,
        "square": inside,
        "triangle": inside & (np.abs(xs - cx) <= depth * rx),
    }


def read_shape_picture(image: Image.Image) -> Reading:
    """Background, foreground colour and shape of a picture of one shape on one background."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    labels = nearest_colours(pixels)
    border = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    bg_index = Counter(border.tolist()).most_common(1)[0][0]
    background = _NAMES[bg_index]
    candidates = labels != bg_index
    if candidates.mean() < 0.01:
        return Reading(None, background, None, 0.0)
    fg_index = Counter(labels[candidates].tolist()).most_common(1)[0][0]
    # Segment along the background -> foreground colour axis, so anti-aliased edges split evenly.
    bg_rgb, fg_rgb = _RGB[bg_index], _RGB[fg_index]
    axis = fg_rgb - bg_rgb
    alpha = ((pixels - bg_rgb) @ axis) / float(axis @ axis)
    mask = _largest_component(alpha > 0.5)
    ys, xs = np.nonzero(mask)
    if len(ys) < 0.01 * mask.size:
        return Reading(None, background, None, float(mask.mean()))
    boxes = _templates(ys.min(), ys.max(), xs.min(), xs.max(), mask.shape)
    overlap = {name: (mask & t).sum() / max((mask | t).sum(), 1) for name, t in boxes.items()}
    shape = max(overlap, key=lambda name: overlap[name])
    return Reading(_NAMES[fg_index], background, shape, float(mask.mean()))
