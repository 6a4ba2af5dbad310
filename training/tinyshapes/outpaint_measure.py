"""Pixel measures of an outpainted picture (Zoom Out, Pan, Make Square) of the shipped model.

The shipped model draws one shape on a flat background, so an edit that extends the scene should add
background and nothing else, without a visible edge where the source was. Three measures, from the
source picture, the result and the edit request (where the source sits comes from
`generation.editing.edit_canvas`):

- `new_area_objects`: connected regions (8-connected, at least `MIN_OBJECT` pixels) of the new area whose
  colour is more than `FOREGROUND_DISTANCE` from the source's background colour (the median of a ring
  just inside the source's border, clear of any 1–2 px frame);
- `seam_ratio`: the mean colour step across the lines around the seam (up to `SEAM_BAND` pixels either
  side; the largest) over the same step across lines `INTERIOR` pixels inside the source (at least 1 level,
  so flat backgrounds do not divide by ~0): about 1 when the seam is as smooth as the picture;
- `dark_corner_pixels`: pixels within `CORNER` pixels of the old frame's corners that are more than
  `DARK_MARGIN` luma levels darker than the background and not of the shape's colour (further than
  `FOREGROUND_DISTANCE` from it): the dots a kept VAE frame leaves at the corners of the old picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import data, measure
from .contour import _regions

if TYPE_CHECKING:
    from generation.request import GenerationRequest

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background colour that counts as "something there"
MIN_OBJECT = 8  # pixels; smaller specks are not objects
SEAM_BAND = 3
INTERIOR = (6, 10)
CORNER = 3
DARK_MARGIN = 30.0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class OutpaintReading:
    new_area_objects: int
    seam_ratio: float
    dark_corner_pixels: int


def source_box(source: Image.Image, request: GenerationRequest) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the source on the edit's canvas."""
    from generation.editing import edit_canvas

    _, mask = edit_canvas(source, request)
    ys, xs = np.nonzero(np.asarray(mask) < 128)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def background_colour(source: Image.Image) -> np.ndarray:
    """Median colour of the ring 3–5 px inside the source's border."""
    pixels = np.asarray(source.convert("RGB"), dtype=np.float32)
    inner = pixels[3:-3, 3:-3]
    core = np.zeros(inner.shape[:2], dtype=bool)
    core[3:-3, 3:-3] = True
    return np.median(inner[~core], axis=0)


def _line_step(pixels: np.ndarray, axis: int, line: int, span: slice) -> float:
    """Mean absolute colour step between line-1 and line (rows for axis 0, columns for axis 1) over `span`."""
    if axis == 0:
        a, b = pixels[line - 1, span], pixels[line, span]
    else:
        a, b = pixels[span, line - 1], pixels[span, line]
    return float(np.abs(a - b).mean())


def seam_ratio(result: Image.Image, box: tuple[int, int, int, int]) -> float:
    pixels = np.asarray(result.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = box
    ratios = []
    # (axis, seam line, direction into the source, span along the seam) for each side that meets new area.
    sides = [(1, x0, 1, slice(y0, y1)), (1, x1, -1, slice(y0, y1)), (0, y0, 1, slice(x0, x1)), (0, y1, -1, slice(x0, x1))]
    for axis, line, inward, span in sides:
        if line <= 0 or line >= (height if axis == 0 else width):
            continue  # that side of the source is the canvas edge: no seam
        seam = max(_line_step(pixels, axis, line + offset, span) for offset in range(-SEAM_BAND, SEAM_BAND + 1))
        inside = np.mean([_line_step(pixels, axis, line + inward * offset, span) for offset in range(*INTERIOR)])
        ratios.append(seam / max(float(inside), 1.0))
    return max(ratios) if ratios else 1.0


def read_outpaint(source: Image.Image, result: Image.Image, request: GenerationRequest) -> OutpaintReading:
    source = source.convert("RGB")
    box = source_box(source, request)
    x0, y0, x1, y1 = box
    pixels = np.asarray(result.convert("RGB"), dtype=np.float32)
    background = background_colour(source)
    new_area = np.ones(pixels.shape[:2], dtype=bool)
    new_area[y0:y1, x0:x1] = False
    different = np.linalg.norm(pixels - background, axis=-1) > FOREGROUND_DISTANCE
    objects = sum(len(region) >= MIN_OBJECT for region in _regions(different & new_area, 8))

    reading = measure.read(source)
    shape_colour = np.array(data.PALETTE[reading.colour] if reading.colour else background, dtype=np.float32)
    luma = pixels @ _LUMA
    dark_pixels = ((luma < float(background @ _LUMA) - DARK_MARGIN)
                   & (np.linalg.norm(pixels - shape_colour, axis=-1) > FOREGROUND_DISTANCE))
    dark = 0
    height, width = luma.shape
    for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
        if cx in (0, width) and cy in (0, height):
            continue  # a corner of the canvas too: no old frame corner there
        dark += int(dark_pixels[max(0, cy - CORNER):cy + CORNER, max(0, cx - CORNER):cx + CORNER].sum())
    return OutpaintReading(objects, seam_ratio(result, box), dark)
