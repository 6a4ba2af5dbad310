"""Outpainting (Zoom Out, Make Square, Pan): the canvas the model starts from, and where it repaints.

`editing.edit_canvas` places the source on the larger canvas (mask 0 = the source). Painting only the
new area around an untouched source leaves two defects whatever the model family:

- the source's outermost pixels are not always scene: a VAE can leave a 1–2 px frame around a decoded
  picture (the shipped model does, darker at the corners), and kept verbatim it becomes a rectangular
  seam with dark dots at its corners in the middle of the new picture. So the source loses a thin band
  (`trim_width`, on the sides that meet new area) to the repainted area, and the final composite fades
  from the source's interior over that band into the new pixels.
- what the new area starts from decides what is painted there. Stretching the edge pixels outwards
  drags whatever touches the edge (a frame, a shape) across the border, and starting from pure noise
  (strength 1) lets the model compose a whole new picture over the larger canvas — a second, larger
  subject. So the new area starts from the scene's background: the edge pixels, extended, where they
  look like the background, fading into the background colour estimated from a ring inside the source
  (its median colour); the denoiser then adds the detail at `editing.OUTPAINT_STRENGTH` (< 1), which
  keeps the composition of the start.
- how much noise that strength adds depends on the model's noise schedule: the same 0.5 is the noise of
  training timestep 500 on SD's scaled-linear betas but far more on linear betas (the shipped model's),
  enough to compose a second, larger subject over the start. So the strength is stated on SD's schedule
  and `schedule_strength` converts it to the model's own (same signal share ᾱ) before the call.
- the denoiser repaints a flat background a few levels off the source's (the shipped model: up to ~6), which
  shows the old frame as a faint rectangle; `match_tone` shifts the repainted area back by that drift.

Pure numpy/PIL; the same for every family (SD, SDXL, SD3, Flux): only the denoise call differs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import PIL.Image

TONE_BAND = 4  # pixels either side of the seam whose colours the tone match compares
TONE_LIMIT = 16.0  # RGB distance: a larger difference across the seam is content, not a drift of tone
FADE_SHARE = 0.25  # the edge colour fades into the background estimate over this share of the new area's depth
OUTLIER_LEVELS = 48.0  # an edge pixel further than this (RGB distance) from the background is not extended


# SD 1.x/2.x's and SDXL's training schedule (scaled-linear betas over 1000 steps): the scale strengths are stated on.
SD_BETAS = (0.00085, 0.012)
SD_TIMESTEPS = 1000


def _sd_alphas_cumprod() -> np.ndarray:
    betas = np.linspace(SD_BETAS[0] ** 0.5, SD_BETAS[1] ** 0.5, SD_TIMESTEPS, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def schedule_strength(strength: float, scheduler: Any) -> float:
    """`strength` on SD's schedule converted to `scheduler`'s: the share of its training timesteps whose
    signal share ᾱ equals SD's at `strength` (SD and SDXL: unchanged; linear betas 1e-4–0.02: 0.5 → 0.353).
    Flow-matching schedules (SD3, Flux: no betas, σ = t shifted for the picture size) keep `strength`, and
    so does 1 (pure noise on any schedule)."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    config = getattr(scheduler, "config", {})
    if alphas is None or config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction":
        return strength
    if strength <= 0 or strength >= 1:
        return strength
    reference = _sd_alphas_cumprod()
    target = float(np.interp(strength * (SD_TIMESTEPS - 1), np.arange(SD_TIMESTEPS), reference))
    own = np.asarray(alphas, dtype=np.float64)
    timestep = float(np.interp(-target, -own, np.arange(len(own))))  # ᾱ falls with t: interpolate on -ᾱ
    return min(1.0, max(timestep / (len(own) - 1), 1.0 / len(own)))


def outpaint_steps(steps: int, strength: float) -> int:
    """The steps to schedule so that at least one runs at `strength` (`--steps 1` at strength 0.5 would run
    none, which the pipelines refuse)."""
    return max(steps, math.ceil(1 / strength)) if strength > 0 else steps


def trim_width(width: int, height: int) -> int:
    """Pixels of the source's border repainted with the new area: at least 2 (the frame a VAE leaves)."""
    return max(2, min(width, height) // 48)


def source_box(mask: PIL.Image.Image) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the kept source on an outpainting canvas (mask 0 = kept)."""
    ys, xs = np.nonzero(np.asarray(mask) < 128)
    if not len(ys):
        raise ValueError("the outpainting mask keeps no pixel of the source")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def inner_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """`box` shrunk by `trim_width` on each side that meets new area (a side on the canvas edge stays)."""
    x0, y0, x1, y1 = box
    width, height = size
    trim = min(trim_width(x1 - x0, y1 - y0), (x1 - x0) // 4, (y1 - y0) // 4)
    return (x0 + trim if x0 > 0 else x0, y0 + trim if y0 > 0 else y0,
            x1 - trim if x1 < width else x1, y1 - trim if y1 < height else y1)


def background_estimate(pixels: np.ndarray) -> np.ndarray:
    """The median colour of the ring just inside the border of an (h, w, 3) picture (its background, where
    the subject does not fill the frame)."""
    height, width = pixels.shape[:2]
    ring = max(2, min(width, height) // 16)
    core = np.zeros((height, width), dtype=bool)
    core[ring:height - ring, ring:width - ring] = True
    return np.median(pixels[~core].reshape(-1, 3).astype(np.float32), axis=0)


def _distance_outside(box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """Per canvas pixel, its Chebyshev distance (in pixels) to the box; 0 inside."""
    x0, y0, x1, y1 = box
    width, height = size
    xs, ys = np.arange(width), np.arange(height)
    dx = np.maximum(np.maximum(x0 - xs, xs - (x1 - 1)), 0)
    dy = np.maximum(np.maximum(y0 - ys, ys - (y1 - 1)), 0)
    return np.maximum(dx[None, :], dy[:, None]).astype(np.float32)


def background_fill(inner: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """The whole canvas: `inner` (the kept source) at `box`, the rest its edge pixels extended outwards where
    they look like background (else the background estimate), fading into the background estimate."""
    x0, y0, x1, y1 = box
    width, height = size
    background = background_estimate(inner)
    extended = np.pad(inner.astype(np.float32), ((y0, height - y1), (x0, width - x1), (0, 0)), mode="edge")
    outliers = np.linalg.norm(extended - background, axis=-1) > OUTLIER_LEVELS
    extended[outliers] = background
    distance = _distance_outside(box, size)
    depth = max(width - (x1 - x0), height - (y1 - y0), 1)
    fade = np.clip(distance / max(1.0, FADE_SHARE * depth), 0.0, 1.0)[..., None]
    filled = extended * (1.0 - fade) + background * fade
    filled[y0:y1, x0:x1] = inner
    return np.clip(np.rint(filled), 0, 255).astype(np.uint8)


def outpaint_canvas(canvas: PIL.Image.Image, mask: PIL.Image.Image) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """(start canvas, repaint mask) for outpainting from `edit_canvas`'s (canvas, mask): the source's border
    band joins the repainted area, and everything repainted starts from the scene's background."""
    box = inner_box(source_box(mask), canvas.size)
    x0, y0, x1, y1 = box
    pixels = np.asarray(canvas.convert("RGB"))
    filled = background_fill(pixels[y0:y1, x0:x1], box, canvas.size)
    repaint = np.full(filled.shape[:2], 255, dtype=np.uint8)
    repaint[y0:y1, x0:x1] = 0
    return PIL.Image.fromarray(filled, "RGB"), PIL.Image.fromarray(repaint, "L")


def match_tone(painted: PIL.Image.Image, repaint: PIL.Image.Image, start: PIL.Image.Image) -> PIL.Image.Image:
    """`painted` with its repainted area shifted by the tone it drifted from the kept source: the median colour
    of the source just inside the seam minus that of the painted pixels just outside it (a flat background
    repainted a few levels off shows the old frame as a rectangle). A difference over TONE_LIMIT is left as is."""
    box = source_box(repaint)
    pixels = np.asarray(painted.convert("RGB"), dtype=np.float32)
    distance = _distance_outside(box, painted.size)
    outside = pixels[(distance > 0) & (distance <= TONE_BAND)]
    x0, y0, x1, y1 = box
    width, height = painted.size
    kept = np.asarray(start.convert("RGB"), dtype=np.float32)[y0:y1, x0:x1]
    ring = np.zeros(kept.shape[:2], dtype=bool)  # only along the seam: a side on the canvas edge keeps its frame
    ring[:, :TONE_BAND] |= x0 > 0
    ring[:, -TONE_BAND:] |= x1 < width
    ring[:TONE_BAND] |= y0 > 0
    ring[-TONE_BAND:] |= y1 < height
    if not len(outside) or not ring.any():
        return painted
    offset = np.median(kept[ring], axis=0) - np.median(outside, axis=0)
    if np.linalg.norm(offset) > TONE_LIMIT:
        return painted
    shifted = np.where((distance > 0)[..., None], pixels + offset, pixels)
    return PIL.Image.fromarray(np.clip(np.rint(shifted), 0, 255).astype(np.uint8), "RGB")
