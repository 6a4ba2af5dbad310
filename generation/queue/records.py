"""Conversion between a GenerationRequest and what the Store keeps about it (the queue reads jobs back
from their records; the bot records them).

The Store's parameter columns are named exactly like the request's fields, so the conversion is a
copy; the init image and the reference pictures are kept as files instead of columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..request import BatchPlace, GenerationRequest

if TYPE_CHECKING:
    from storage import GenerationRecord, ImageRecord

_FILE_FIELDS = {"init_image", "sref_image", "oref_image"}


def request_to_params(request: GenerationRequest) -> dict[str, Any]:
    """The `params` mapping for `Store.create_generation`: the init image excluded (the Store takes it
    apart); the reference pictures included (the Store keeps them as files with their sha256)."""
    return {
        field.name: getattr(request, field.name)
        for field in dataclasses.fields(request)
        if field.name != "init_image"
    }


def request_from_record(record: GenerationRecord, init_image: bytes | None = None,
                        references: Mapping[str, bytes | None] | None = None) -> GenerationRequest:
    """Rebuild the exact request a record was made from (unset columns take the request defaults).

    `references` ({"sref_image": bytes, …}, `Store.read_references`) are the stored reference pictures,
    so a Reroll, Vary or re-render uses exactly the picture the record was rendered with."""
    known = {field.name for field in dataclasses.fields(GenerationRequest)}
    params = {name: value for name, value in record.request_params.items() if name in known}
    if params.get("negative_prompt") is None:
        params.pop("negative_prompt", None)
    pictures = dict(references or {})
    return GenerationRequest(**params, init_image=init_image, sref_image=pictures.get("sref_image"),
                             oref_image=pictures.get("oref_image"))


def request_for_image(record: GenerationRecord, image: ImageRecord, init_image: bytes | None = None,
                      references: Mapping[str, bytes | None] | None = None) -> GenerationRequest:
    """The request that reproduces one image of a grid on its own."""
    return request_from_record(record, init_image, references).replace(
        count=1,
        seed=image.seed,
        variation_seed=image.variation_seed,
        variation_strength=image.variation_strength or 0.0,
    )


def place_of(image: ImageRecord) -> BatchPlace:
    """Where the image sat in the pipeline call that rendered it. `service.submit(request_for_image(...),
    place=place_of(image))` renders it again in that place: the stored pixels, bit-exact on the same device type."""
    return BatchPlace(image.batch_size, image.batch_index)
