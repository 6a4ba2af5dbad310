"""Instruction edits in the bot: with a model that edits by instruction (FLUX.1 Kontext, Qwen-Image-Edit,
FLUX.2 [klein]; `RenderQueue.instruction_pictures`), words change a picture and the model keeps the rest.

`instruction_edit_request` is the one way to ask for "an instruction edit of this parent picture with these
words": the Edit form (✏️ on results) and conversation turns both call it and submit what it returns
through `Intake.submit`. `/imagine` with an init image on such a model is an instruction edit too; its
picture is downloaded by the job, which then sets the size (`picture_render_size`).

An instruction edit is recorded with `edit_mode="instruction"`: Info and /history show "instruction edit",
the PNG text says `Edit: instruction` (no denoising strength) and the ETA counts every step.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from generation.editing import INSTRUCTION
from generation.queue.records import request_from_record

if TYPE_CHECKING:
    from generation import GenerationRequest, Limits
    import discord

    from generation.queue import RenderQueue
    from storage import GenerationRecord, Store


def edits_by_instruction(queue: RenderQueue, model: str) -> bool:
    return queue.instruction_pictures(model) > 0


def picture_render_size(picture: bytes, multiple: int, limits: Limits) -> tuple[int, int]:
    """The size an instruction edit of `picture` renders at: the picture's own (an edit keeps the size),
    in multiples of the family's `multiple`, shrunk to fit the operator's limits keeping its shape."""
    with Image.open(io.BytesIO(picture)) as image:
        width, height = image.size
    scale = min(1.0, limits.max_size / width, limits.max_size / height, math.sqrt(limits.max_pixels / (width * height)))
    low = -(-limits.min_size // multiple) * multiple
    return max(low, int(width * scale) // multiple * multiple), max(low, int(height * scale) // multiple * multiple)


async def instruction_edit_request(store: Store, queue: RenderQueue, parent: GenerationRecord, words: str, *,
                                   index: int = 0, negative_prompt: str | None = None,
                                   seed: int | None = None) -> GenerationRequest:
    """An instruction edit of `parent`'s image `index` (its stored PNG) with `words` as the instruction.

    Everything else comes from the parent's record (model, steps, guidance, sampler, its reference pictures);
    the size is the picture's, one image, a new seed unless `seed` is given. `words` may carry inline --flags
    (Intake parses them). Submit the result as a child of `parent` (GenerationKind.EDIT)."""
    picture = await store.read_image(parent.images[index])
    references = await store.read_references(parent.id) if parent.sref_path or parent.oref_path else {}
    source = request_from_record(parent, None, references)
    width, height = picture_render_size(picture, queue.size_multiple(source.model), queue.limits)
    return source.replace(
        prompt=words.strip(), init_image=picture, edit_mode=INSTRUCTION, width=width, height=height, count=1,
        seed=seed, variation_seed=None, variation_strength=0.0, edit_factor=None, edit_direction=None,
        edit_region=None,
        negative_prompt=source.negative_prompt if negative_prompt is None else negative_prompt.strip())


def blend_references(fields: Mapping[str, Any], more: Sequence[discord.Attachment],
                     pictures: int) -> dict[str, Any] | None:
    """/blend with words on a model that takes several pictures (FLUX.2 [klein], Qwen-Image-Edit Plus): the
    first picture is edited by the words and the others go in as its references (`sref_url`, then `oref_url`:
    these pipelines take them as plain extra pictures). None: a plain blend (no words, or more pictures than
    the model or the two reference slots take)."""
    if not str(fields.get("prompt", "")).strip() or not more or len(more) > 2 or pictures < 1 + len(more):
        return None
    urls = dict(zip(("sref_url", "oref_url"), (attachment.url for attachment in more)))
    return {"edit_mode": INSTRUCTION, **urls}
