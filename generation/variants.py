"""Requests derived from an earlier one: reroll, variations (A1111 subseeds) and a 2x upscale."""

from __future__ import annotations

import io

import PIL.Image

from .request import GenerationRequest, RequestError

SUBTLE_VARIATION = 0.15
STRONG_VARIATION = 0.5
UPSCALE_STRENGTH = 0.35
# Vary of a result made from an init image: how far the img2img pass moves from the picture.
SUBTLE_IMAGE_VARIATION = 0.35
STRONG_IMAGE_VARIATION = 0.65


def reroll_request(request: GenerationRequest) -> GenerationRequest:
    """The same request with new seeds (chosen by prepare())."""
    return request.replace(seed=None, variation_seed=None, variation_strength=0.0)


def variation_request(
    request: GenerationRequest, image_seed: int, *, strong: bool = False, count: int | None = None
) -> GenerationRequest:
    """`count` variations of one image: every one keeps its seed, whose noise is blended with the noise
    of a new variation seed (variation_seed + i for image i, picked by prepare()).

    Strength 0.15 (subtle) keeps the composition; 0.5 (strong) changes it visibly.
    """
    if request.init_image is not None:
        raise RequestError("Variations work on text-to-image results; use reroll for image-to-image results.")
    return request.replace(
        seed=image_seed,
        count=request.count if count is None else count,
        variation_seed=None,  # prepare() picks new ones
        variation_strength=STRONG_VARIATION if strong else SUBTLE_VARIATION,
    )


def image_variation_request(
    request: GenerationRequest, image: PIL.Image.Image | bytes, *, strong: bool = False, count: int | None = None
) -> GenerationRequest:
    """`count` variations of a result made from an init image (an edit, an upscale, img2img, a blend).

    Subseed noise cannot apply where an init image sets the start, so the picture itself becomes the init
    image of an img2img pass with the same prompt and new seeds (chosen by prepare()), at its own size.
    """
    if isinstance(image, bytes):
        image = PIL.Image.open(io.BytesIO(image))
    width, height = image.size
    return request.replace(
        init_image=image.convert("RGB"),
        width=width,
        height=height,
        strength=STRONG_IMAGE_VARIATION if strong else SUBTLE_IMAGE_VARIATION,
        seed=None,
        count=request.count if count is None else count,
        variation_seed=None,
        variation_strength=0.0,
        edit_mode=None,  # the picture is the whole image now: nothing left to outpaint or blend
        edit_factor=None,
        edit_direction=None,
        edit_region=None,
    )


def upscale_request(
    request: GenerationRequest,
    image: PIL.Image.Image | bytes,
    image_seed: int,
    *,
    factor: int = 2,
    strength: float = UPSCALE_STRENGTH,
) -> GenerationRequest:
    """A1111's hires-fix idea: resize the image `factor` times, then an img2img pass at low strength
    with the same prompt and seed adds detail at the new size."""
    if isinstance(image, bytes):
        image = PIL.Image.open(io.BytesIO(image))
    width, height = image.size
    return request.replace(
        init_image=image.convert("RGB"),
        width=width * factor,
        height=height * factor,
        strength=strength,
        seed=image_seed,
        count=1,
        variation_seed=None,
        variation_strength=0.0,
        edit_mode=None,  # the upscaled picture is the whole image: nothing left to outpaint
        edit_factor=None,
        edit_direction=None,
        edit_region=None,
    )
