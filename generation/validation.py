"""The rules a request must follow before it is queued: one module above both the request and the edits.

`validate_request` checks every field against the operator's `Limits` (and an edit's own parameters
through generation.editing); `check_prompt_length` needs the model's tokenizer, so the queue calls it
once the model is known. Validation never "fixes" input: each problem is a `RequestError` saying what
is wrong and what is allowed.
"""

from __future__ import annotations

import io
import math
from typing import Any

import PIL.Image

from .editing import check_edit
from .references import check_reference_fields
from .request import MAX_GUIDANCE, MAX_SEED, GenerationRequest, Limits, RequestError
from .samplers import SAMPLERS


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_int(name: str, value: Any, low: int, high: int, what: str = "") -> None:
    if not _is_int(value) or not low <= value <= high:
        raise RequestError(f"{name} must be a whole number from {low} to {high}{what}, got {value!r}.")


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if not _is_number(value) or not low <= value <= high:
        raise RequestError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}.")


def _check_size(name: str, value: Any, limits: Limits) -> None:
    if not _is_int(value) or not limits.min_size <= value <= limits.max_size or value % 8:
        raise RequestError(
            f"{name} must be a multiple of 8 from {limits.min_size} to {limits.max_size}, got {value!r}."
        )


def check_model(model: Any, limits: Limits) -> None:
    if model not in limits.models:
        raise RequestError(f"Unknown model {model!r}. Available models: {', '.join(limits.models)}.")


def validate_request(request: GenerationRequest, limits: Limits) -> None:
    """Raise RequestError for the first problem in `request`; sizes may still be None here.

    Checks that need the model (prompt length in tokens) live in `check_prompt_length`.
    """
    if not isinstance(request.prompt, str) or (not request.prompt.strip() and request.edit_mode != "blend"):
        raise RequestError("prompt must not be empty; describe the image you want.")
    if not isinstance(request.negative_prompt, str):
        raise RequestError("The negative prompt must be text.")
    check_model(request.model, limits)
    if request.sampler not in SAMPLERS:
        raise RequestError(f"Unknown sampler {request.sampler!r}. Available samplers: {', '.join(SAMPLERS)}.")
    for name in ("width", "height"):
        if getattr(request, name) is not None:
            _check_size(name, getattr(request, name), limits)
    if request.width is not None and request.height is not None:
        pixels = request.width * request.height
        if pixels > limits.max_pixels:
            raise RequestError(
                f"{request.width}x{request.height} is {pixels} pixels; the limit is {limits.max_pixels} pixels "
                f"(for example {math.isqrt(limits.max_pixels) // 8 * 8}x{math.isqrt(limits.max_pixels) // 8 * 8})."
            )
    _check_int("steps", request.num_inference_steps, 1, limits.max_steps)
    _check_number("guidance", request.guidance_scale, 0.0, MAX_GUIDANCE)
    if request.seed is not None:
        _check_int("seed", request.seed, 0, MAX_SEED)
    _check_int("count", request.count, 1, limits.max_count, " images per request")
    _check_number("strength", request.strength, 0.0, 1.0)
    if request.variation_seed is not None:
        _check_int("variation seed", request.variation_seed, 0, MAX_SEED)
    _check_number("variation strength", request.variation_strength, 0.0, 1.0)
    if request.edit_mode is not None:
        check_edit(request)
    if any(value is not None for value in (request.sref_url, request.oref_url, request.sref_image,
                                           request.oref_image, request.sref_weight, request.oref_weight)):
        check_reference_fields(request)
    if request.init_image is not None:
        if not isinstance(request.init_image, bytes):
            raise RequestError("The init image must be PNG or JPEG bytes or a PIL image.")
        if request.variation_strength > 0:
            raise RequestError(
                "Variations only work for text-to-image; remove the init image or set the variation strength to 0."
            )
        try:
            with PIL.Image.open(io.BytesIO(request.init_image)) as image:
                image.verify()
        except Exception:
            raise RequestError("The init image is not a readable image; use a PNG or JPEG file.") from None


def check_prompt_length(name: str, text: str, tokenizer: Any) -> None:
    """Report a prompt that the text encoder would cut, instead of dropping its end silently."""
    window = tokenizer.model_max_length
    count = len(tokenizer(text, truncation=False).input_ids)  # includes the start and end tokens
    if count > window:
        raise RequestError(
            f"{name} is too long: {count} tokens, but the model reads at most {window} "
            f"(including its start and end tokens), so the last {count - window} would be dropped. Shorten it."
        )
