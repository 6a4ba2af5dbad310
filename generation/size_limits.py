"""A model's own size limit: the largest side its entry declares (the shipped model: its trained sizes).

The operator's MAX_SIZE and MAX_PIXELS bound every model; a model entry's `max_size` bounds what members
may ask of that model, below them. A picture made from another one (an upscale, a zoom or pan, img2img)
may reach EDIT_SIZE_FACTOR times the limit: the shipped model is trained on 2× upscales of its sizes.
Checked in the one validation path (the family's `check_request`, called by `RequestChecker.prepare`,
generation.queue.requests).
"""

from __future__ import annotations

from dataclasses import replace

from .request import GenerationRequest, Limits, RequestError

EDIT_SIZE_FACTOR = 2


def picture_limits(limits: Limits, max_size: int | None) -> Limits:
    """The operator's `limits` with the longest side a picture made from another may have under a model
    limit of `max_size` (None: no model limit): what an edit's canvas is shrunk to fit."""
    if max_size is None:
        return limits
    return replace(limits, max_size=min(limits.max_size, max_size * EDIT_SIZE_FACTOR))


def largest_side(request: GenerationRequest, max_size: int) -> int:
    """The longest side `request` may have under a model limit of `max_size`."""
    return max_size * EDIT_SIZE_FACTOR if request.init_image is not None else max_size


def check_model_size(request: GenerationRequest, max_size: int | None, label: str) -> None:
    """RequestError naming model `label`'s limit when the request's width or height is over `max_size` (a
    side left open is the model's native size, within the limit)."""
    if max_size is None:
        return
    limit = largest_side(request, max_size)
    sides = {name: value for name, value in (("width", request.width), ("height", request.height)) if value is not None}
    if all(value <= limit for value in sides.values()):
        return
    asked = (f"{request.width}×{request.height}" if len(sides) == 2
             else " ".join(f"{name} {value}" for name, value in sides.items()))
    if request.init_image is not None:
        raise RequestError(
            f"{label} draws at most {limit} pixels a side from a picture ({EDIT_SIZE_FACTOR}× its largest "
            f"size, {max_size}); {asked} is larger. Start from a smaller picture.")
    raise RequestError(
        f"{label} draws at most {limit} pixels a side (the largest size it was made for); "
        f"{asked} is larger. Ask for {limit}×{limit} or less.")
