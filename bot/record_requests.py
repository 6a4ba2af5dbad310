"""Conversion between a GenerationRequest and what the Store keeps about it.

The Store's parameter columns are named exactly like the request's fields, so the conversion is a
copy; the init image is the one field kept as a file instead of a column.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from generation import GenerationRequest

if TYPE_CHECKING:
    from storage import GenerationRecord, ImageRecord

_FILE_FIELDS = {"init_image"}


def request_to_params(request: GenerationRequest) -> dict[str, Any]:
    """The `params` mapping for `Store.create_generation` (init image excluded)."""
    return {
        field.name: getattr(request, field.name)
        for field in dataclasses.fields(request)
        if field.name not in _FILE_FIELDS
    }


def request_from_record(record: GenerationRecord, init_image: bytes | None = None) -> GenerationRequest:
    """Rebuild the exact request a record was made from (unset columns take the request defaults)."""
    known = {field.name for field in dataclasses.fields(GenerationRequest)}
    params = {name: value for name, value in record.request_params.items() if name in known}
    if params.get("negative_prompt") is None:
        params.pop("negative_prompt", None)
    return GenerationRequest(**params, init_image=init_image)


def request_for_image(record: GenerationRecord, image: ImageRecord,
                      init_image: bytes | None = None) -> GenerationRequest:
    """The request that reproduces one image of a grid on its own."""
    return request_from_record(record, init_image).replace(
        count=1,
        seed=image.seed,
        variation_seed=image.variation_seed,
        variation_strength=image.variation_strength or 0.0,
    )


def _number(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def imagine_command_line(request: GenerationRequest, *, with_init_image: bool = False) -> str:
    """A `/imagine prompt: …` line that reproduces `request`.

    What has an inline flag (--seed, --steps, --cfg, --sampler, --count, --no) goes into the prompt;
    the rest is written as the command's other options (width: height: model: strength:).
    `with_init_image` marks a request whose init image was left out (records keep it as a file).
    """
    flags = [f"--seed {request.seed}", f"--steps {request.num_inference_steps}",
             f"--cfg {_number(request.guidance_scale)}", f"--sampler {request.sampler}"]
    if request.count != 1:
        flags.append(f"--count {request.count}")
    if request.negative_prompt:
        # --no takes every word up to the next flag, so it goes last.
        flags.append(f"--no {request.negative_prompt}")
    line = f"/imagine prompt: {request.prompt} {' '.join(flags)}"
    if request.width is not None and request.height is not None:
        line += f" width: {request.width} height: {request.height}"
    line += f" model: {request.model}"
    if request.init_image is not None or with_init_image:
        line += f" strength: {_number(request.strength)} init_image: (the original picture)"
    return line
