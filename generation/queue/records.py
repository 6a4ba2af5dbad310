"""Conversion between a GenerationRequest and what the Store keeps about it (the queue reads jobs back
from their records; the bot records them).

The Store's parameter columns are named exactly like the request's fields, so the conversion is a
copy; the init image is the one field kept as a file instead of a column.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..request import BatchPlace, GenerationRequest

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
