"""A second, independent way to read the shape in a shapes image: count its corners.

``measure.py`` compares the shape's region with ideal templates (an overlap score, snapped to the
palette). This measure shares nothing with it:

- segmentation: no palette. The background is the median colour of the image border; a pixel is
  foreground when its RGB distance from that colour is above an Otsu threshold (the split that best
  separates the two clusters of distances); the largest 8-connected region, holes filled, is the shape.
- shape: boundary geometry. The convex hull of the region's pixel squares is simplified with
  Ramer-Douglas-Peucker at a tolerance of ``TOLERANCE`` x sqrt(area), and its corners counted:
  3 = triangle, 4 = square (if its sides are about equal; a 4-gon with a short side is a triangle with
  a cut-off apex), 6 or more = circle. Five corners (a blunt corner) is settled by how much of its
  bounding box the hull fills (triangle 0.5, circle 0.79, square 1).

So a square whose corners are rounded off by more than a few percent of its size reads as a circle,
and a triangle with a blunt apex as a square or circle: the measure checks corners, which the
template overlap forgives.

Several shapes: every 8-connected region above a minimum area is one shape (each re-thresholded at
half its own contrast, so anti-aliased edges split evenly); their count, and the largest one's size
and position (from its bounding box), are read like ``measure.py`` reads them, from these regions.

    python -m training.tinyshapes.check_measures     # both measures on training images of every bucket
"""

from __future__ import annotations

import argparse
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from training.tinyshapes.measure import min_area
from training.tinyshapes.scenes import position_name, size_word, slot

from . import data

TOLERANCE = 0.09  # RDP tolerance, as a fraction of sqrt(shape area)
MERGE = 0.2  # hull edges shorter than this fraction of sqrt(area) are one (blunt) corner
SQUARE_SIDES = 0.5  # a 4-corner shape is a square when its shortest side is at least this x its longest


@dataclass(frozen=True)
class ContourReading:
    shape: str | None  # None when no foreground region was found
    corners: int  # corners of the simplified hull
    circularity: float  # 4 pi area / perimeter^2 of the hull
    area_share: float  # fraction of the image covered by the region


def _otsu(values: np.ndarray) -> float:
    """Threshold that maximises the between-class variance of ``values``."""
    hist, edges = np.histogram(values, bins=128)
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(centres[int(between.argmax())])


def _regions(mask: np.ndarray, connectivity: int) -> list[np.ndarray]:
    """Connected regions of ``mask`` as arrays of (y, x), 4- or 8-connected."""
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    height, width = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    regions = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        queue, region = deque([(y0, x0)]), []
        while queue:
            y, x = queue.popleft()
            region.append((y, x))
            for dy, dx in steps:
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        regions.append(np.array(region))
    return regions


def segment(image: Image.Image) -> np.ndarray:
    """Boolean mask of the shape: largest region that differs from the border colour, holes filled."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    distance = np.linalg.norm(pixels - np.median(border, axis=0), axis=-1)
    if distance.max() < 30:  # nothing stands out from the background
        return np.zeros(distance.shape, dtype=bool)
    mask = distance > max(_otsu(distance), 15.0)
    regions = _regions(mask, 8)
    if not regions:
        return mask
    best = max(regions, key=len)
    shape = np.zeros_like(mask)
    shape[best[:, 0], best[:, 1]] = True
    # Fill holes: background regions of the complement that do not touch the border.
    for hole in _regions(~shape, 4):
        ys, xs = hole[:, 0], hole[:, 1]
        if ys.min() > 0 and xs.min() > 0 and ys.max() < shape.shape[0] - 1 and xs.max() < shape.shape[1] - 1:
            shape[ys, xs] = True
    return shape


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; counter-clockwise hull of (x, y) points, no repeated end point."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return np.array(pts, dtype=np.float64)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple] = []
    upper: list[tuple] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def _rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on an open polyline (keeps both ends)."""
    if len(points) < 3:
        return points
    start, end = points[0], points[-1]
    direction = end - start
    length = np.hypot(*direction)
    if length == 0:
        distances = np.hypot(*(points - start).T)
    else:
        distances = np.abs(direction[0] * (points[:, 1] - start[1]) - direction[1] * (points[:, 0] - start[0])) / length
    index = int(distances.argmax())
    if distances[index] <= epsilon:
        return np.array([start, end])
    left = _rdp(points[: index + 1], epsilon)
    right = _rdp(points[index:], epsilon)
    return np.concatenate([left[:-1], right])


def simplify_closed(polygon: np.ndarray, epsilon: float, merge: float = 0.0) -> np.ndarray:
    """RDP on a closed polygon (split at the vertex farthest from the centroid and the vertex farthest
    from that one), then edges shorter than ``merge`` collapsed to their midpoint."""
    if len(polygon) <= 3:
        return polygon
    centre = polygon.mean(0)
    first = int(np.hypot(*(polygon - centre).T).argmax())
    rolled = np.roll(polygon, -first, axis=0)
    second = int(np.hypot(*(rolled - rolled[0]).T).argmax())
    a = _rdp(rolled[: second + 1], epsilon)
    b = _rdp(np.concatenate([rolled[second:], rolled[:1]]), epsilon)
    simplified = np.concatenate([a[:-1], b[:-1]])
    # A last pass over the seams: drop vertices that lie within epsilon of their neighbours' chord.
    changed = True
    while changed and len(simplified) > 3:
        changed = False
        for i in range(len(simplified)):
            p, q, r = simplified[i - 1], simplified[i], simplified[(i + 1) % len(simplified)]
            chord = r - p
            length = np.hypot(*chord)
            if length and abs(chord[0] * (q[1] - p[1]) - chord[1] * (q[0] - p[0])) / length <= epsilon:
                simplified = np.delete(simplified, i, axis=0)
                changed = True
                break
    # Blunt corners: an edge shorter than ``merge`` is one corner, not two.
    while len(simplified) > 3:
        edges = np.hypot(*(np.roll(simplified, -1, axis=0) - simplified).T)
        i = int(edges.argmin())
        if edges[i] >= merge:
            break
        j = (i + 1) % len(simplified)
        simplified[i] = (simplified[i] + simplified[j]) / 2
        simplified = np.delete(simplified, j, axis=0)
    return simplified


def _area_perimeter(polygon: np.ndarray) -> tuple[float, float]:
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    perimeter = float(np.hypot(*(np.roll(polygon, -1, axis=0) - polygon).T).sum())
    return float(area), perimeter


def read_shape(image: Image.Image) -> ContourReading:
    """The largest region's shape (None when it covers under 1 % of the image)."""
    mask = segment(image)
    if mask.sum() < 0.01 * mask.size:
        return ContourReading(None, 0, 0.0, float(mask.mean()))
    return read_shape_of_mask(mask)


def read_shape_of_mask(mask: np.ndarray) -> ContourReading:
    """Corner count of the region ``mask``."""
    if mask.sum() < 6:
        return ContourReading(None, 0, 0.0, float(mask.mean()))
    ys, xs = np.nonzero(mask)
    # The corners of every pixel square of the region: the hull of the region as drawn.
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0.2, 0.8) for dy in (0.2, 0.8)])
    hull = convex_hull(corners)
    area, perimeter = _area_perimeter(hull)
    polygon = simplify_closed(hull, TOLERANCE * np.sqrt(area), MERGE * np.sqrt(area))
    count = len(polygon)
    circularity = 4 * np.pi * area / perimeter**2
    edges = np.hypot(*(np.roll(polygon, -1, axis=0) - polygon).T)
    if count <= 3:
        shape = "triangle"
    elif count == 4:
        # Four corners with one side much shorter than the longest: a triangle with its apex cut off
        # (a trapezoid), not a square, whose sides are all about equal.
        shape = "square" if edges.min() >= SQUARE_SIDES * edges.max() else "triangle"
    elif count >= 6:
        shape = "circle"
    else:
        # Five corners: a blunt corner, or a small shape whose pixels round it off. How much of its
        # bounding box the hull fills settles it (triangle 1/2, circle pi/4, square 1).
        width, height = np.ptp(hull[:, 0]), np.ptp(hull[:, 1])
        fill = area / max(width * height, 1e-6)
        shape = "triangle" if fill < 0.70 else "circle" if fill < 0.88 else "square"
    return ContourReading(shape, count, float(circularity), float(mask.mean()))


@dataclass(frozen=True)
class Region:
    shape: str
    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive)
    area: int


@dataclass(frozen=True)
class ContourScene:
    regions: tuple[Region, ...]  # largest first
    size: str | None
    position: str | None

    @property
    def count(self) -> int:
        return len(self.regions)


def _fill_holes(region_mask: np.ndarray) -> np.ndarray:
    filled = region_mask.copy()
    for hole in _regions(~region_mask, 4):
        ys, xs = hole[:, 0], hole[:, 1]
        if ys.min() > 0 and xs.min() > 0 and ys.max() < filled.shape[0] - 1 and xs.max() < filled.shape[1] - 1:
            filled[ys, xs] = True
    return filled


def _classify(mask: np.ndarray) -> str:
    return read_shape_of_mask(mask).shape or "circle"


def read_scene(image: Image.Image) -> ContourScene:
    """Every shape in the image: Otsu-separated regions, each re-thresholded at half its own contrast."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    distance = np.linalg.norm(pixels - np.median(border, axis=0), axis=-1)
    if distance.max() < 30:
        return ContourScene((), None, None)
    # A low first threshold (two shapes may differ in contrast a lot), then each region's own.
    coarse = distance > max(min(_otsu(distance), 40.0), 15.0)
    smallest = min_area(width, height)
    found = []
    for region in _regions(coarse, 8):
        if len(region) < smallest:
            continue
        ys, xs = region[:, 0], region[:, 1]
        contrast = float(np.percentile(distance[ys, xs], 90))  # the shape's own colour, not its edge
        top, bottom, left, right = max(ys.min() - 1, 0), min(ys.max() + 2, height), max(xs.min() - 1, 0), min(xs.max() + 2, width)
        window = np.zeros_like(coarse)
        window[top:bottom, left:right] = distance[top:bottom, left:right] > contrast / 2
        pieces = [piece for piece in _regions(window & _dilate(coarse_region(region, coarse.shape)), 8)]
        if not pieces:
            continue
        best = max(pieces, key=len)
        mask = np.zeros_like(coarse)
        mask[best[:, 0], best[:, 1]] = True
        mask = _fill_holes(mask)
        if mask.sum() < smallest:
            continue
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        found.append(Region(_classify(mask), box, int(mask.sum())))
    found.sort(key=lambda r: r.area, reverse=True)
    if not found:
        return ContourScene((), None, None)
    left, top, right, bottom = found[0].box
    side = max(right - left + 1, bottom - top + 1) / min(width, height)
    position = position_name(slot(left, width - 1 - right), slot(top, height - 1 - bottom))
    return ContourScene(tuple(found), size_word(side), position)


def coarse_region(region: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[region[:, 0], region[:, 1]] = True
    return mask


def _dilate(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def validate(seed: int = 12345, count: int = 2000, sizes=None) -> dict[str, float]:
    """Shape accuracy of ``read_shape`` on freshly drawn training images, per bucket."""
    sizes = sizes or data.BUCKETS
    accuracy = {}
    for ratio, size in sizes.items():
        hits = sum(read_shape(image).shape == scene.shape
                   for image, scene, _ in (data.make_example(seed, i, size) for i in range(count)))
        accuracy[ratio] = hits / count
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Accuracy of the corner-count measure on training images.")
    parser.add_argument("--count", type=int, default=2000, help="images per bucket")
    args = parser.parse_args()
    for ratio, accuracy in validate(count=args.count).items():
        w, h = data.BUCKETS[ratio]
        print(f"{ratio:>5} {w}x{h}: shape {accuracy:7.2%} of {args.count} training images", flush=True)
