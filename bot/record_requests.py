"""Conversion between a GenerationRequest and what the Store keeps about it.

The Store's parameter columns are named exactly like the request's fields, so the conversion is a
copy; the init image is the one field kept as a file instead of a column.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from generation import PARAMETERS, GenerationRequest
from generation.request import BatchPlace

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


def place_of(image: ImageRecord) -> BatchPlace:
    """Where the image sat in the pipeline call that rendered it. `service.submit(request_for_image(...),
    place=place_of(image))` renders it again in that place: the stored pixels, bit-exact on the same device type."""
    return BatchPlace(image.batch_size, image.batch_index)


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def reproduce_prompt(request: GenerationRequest) -> str:
    """What to paste into `/imagine prompt:` as is to render `request` again: its prompt and one inline flag
    per parameter that has one, derived from the parameter table.

    `--no` goes last (it takes every word up to the next flag); empty values and a count of 1 are left out.
    Parameters without a flag are `reproduce_options`.
    """
    flags: list[str] = []
    for parameter in PARAMETERS:
        value = getattr(request, parameter.field)
        if parameter.flag is None or value is None or value == "" or (parameter.field == "count" and value == 1):
            continue
        if parameter.kind == "bool":
            if value:
                flags.append(parameter.flag)
        else:
            flags.append(f"{parameter.flag} {format_value(value)}")
    flags.sort(key=lambda flag: flag.startswith("--no "))
    return " ".join([request.prompt, *flags])


def reproduce_options(request: GenerationRequest, *, with_init_image: bool = False) -> list[str]:
    """The /imagine options that `reproduce_prompt` cannot carry (no inline flag): `init_image`, `strength`.

    `with_init_image` marks a request whose init image was left out (kept as a file).
    """
    if request.init_image is None and not with_init_image:
        return []
    options = [f"{parameter.option}: {format_value(getattr(request, parameter.field))}" for parameter in PARAMETERS
               if parameter.flag is None and parameter.field != "prompt"]
    return ["init_image: (the original picture)", *options]
