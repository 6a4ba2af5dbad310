"""What a conversation turn asks for, as the WorkOrder a button or /imagine would give the one intake.

A turn on a result (a reply, a DM that continues, a thread message) is read by the interpreter
(`generation.conversation`) against that result's record. Its reading becomes work the same way the
buttons make it: actions (reroll, variations, pick, upscale, zoom, pan, square, vary region) through the
same request builders the result buttons use, parameter and prompt changes through `apply` (seed kept),
a new prompt as a fresh /imagine. A turn without a parent (a mention, `new:`) is a new /imagine from its
words, inline --flags and all. Nothing here records or answers: `bot.turn_intake` does.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any

from bot.errors import UserFacingError
from bot.instruction_edits import edits_by_instruction, instruction_edit_request
from bot.intake import WorkOrder
from bot.views.base import source_request
from generation import (GenerationRequest, RequestError, parse_prompt_flags, reroll_request, resolve_model,
                        upscale_request, variation_request)
from generation.conversation import Interpretation, InterpreterConfig, Kind, TurnContext, apply, interpret
from generation.conversation.interpretation import describe_new
from generation.editing import edit_request
from generation.queue.records import request_for_image
from generation.vocabulary import Vocabulary, load_vocabulary
from storage import GenerationKind

if TYPE_CHECKING:
    import discord

    from bot.services import Services
    from storage import GenerationRecord

log = logging.getLogger(__name__)

# Longest message read as a turn; Discord allows 4,000 characters (Nitro), a prompt far fewer.
MAX_TURN_CHARS = 1000
VARY_GRID = 4  # variations of a single image make a grid, as the Vary buttons do
EDIT_KINDS = {"zoom": GenerationKind.ZOOM, "square": GenerationKind.SQUARE, "pan": GenerationKind.PAN,
              "vary_region": GenerationKind.REGION}
EDIT_MODES = {"zoom": "zoom", "square": "square", "pan": "pan", "vary_region": "region"}
START_OVER = ("new:", "new :")


@functools.lru_cache(maxsize=16)
def vocabulary_of(model: str) -> Vocabulary | None:
    """The words the model's folder declares (None: free text, or a hub model with no folder here)."""
    try:
        return load_vocabulary(resolve_model(model))
    except (OSError, ValueError) as error:
        log.warning("model %s: vocabulary not readable (%s); its turns are read as free text", model, error)
        return None


def interpreter_config(services: Services) -> InterpreterConfig:
    settings = services.settings
    key = settings.interpreter_api_key.get_secret_value() if settings.interpreter_api_key is not None else "unused"
    return InterpreterConfig(url=settings.interpreter_url, model=settings.interpreter_model, api_key=key,
                             timeout_s=settings.interpreter_timeout_s)


def check_message(words: str, attachments: int) -> None:
    """What is wrong with a message before it is read at all (UserFacingError)."""
    if len(words) > MAX_TURN_CHARS:
        raise UserFacingError(f"That message is {len(words):,} characters; I read at most {MAX_TURN_CHARS:,}. "
                              "Say the change in a sentence, e.g. “make it night”.")
    if attachments > 1:
        raise UserFacingError(f"That message has {attachments} attachments; attach one picture (the starting "
                              "image) at most.")


def starts_over(words: str) -> str | None:
    """The words after `new:` (a fresh start, whatever came before), or None."""
    stripped = words.lstrip()
    for prefix in START_OVER:
        if stripped.lower().startswith(prefix):
            return stripped[len(prefix):].strip()
    return None


def new_request(words: str, attachment: discord.Attachment | None) -> tuple[WorkOrder, Interpretation]:
    """A mention (or `new:`): /imagine from the words, inline --flags as in /imagine; a picture starts it."""
    prompt = words.strip()
    if not prompt:
        raise UserFacingError("There are no words to read. Say what to draw, e.g. “@imagine-bot a red circle "
                              "on a blue background”.")
    order = WorkOrder(GenerationKind.IMAGINE, {"prompt": prompt}, with_defaults=True, attachment=attachment)
    try:  # the summary shows the picture's words; the intake reads (and checks) the flags
        words_only, _ = parse_prompt_flags(prompt)
    except RequestError:
        words_only = prompt
    summary = describe_new({"prompt": words_only}) + (" · from your picture" if attachment is not None else "")
    return order, Interpretation(Kind.NEW, changes={"prompt": prompt}, summary=summary)


async def read_turn(services: Services, parent: GenerationRecord, words: str) -> Interpretation:
    """The interpreter's reading of `words` against the parent result.

    Where the parent's model edits an image by instruction (its family's capability, asked of the queue:
    FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2 [klein]), a prompt change is read as an instruction edit.
    """
    request = await source_request(services.store, parent)
    by_instruction = edits_by_instruction(services.queue, request.model)
    context = TurnContext(words, request, image_count=max(len(parent.images), 1),
                          vocabulary=vocabulary_of(request.model), edits_by_instruction=by_instruction,
                          limits=services.queue.limits)
    return await interpret(context, interpreter_config(services))


def _image(parent: GenerationRecord, number: int | None) -> int:
    """The 0-based index of image `number` (1-based; None: the first) of the parent."""
    index = (number or 1) - 1
    if not 0 <= index < len(parent.images):
        raise UserFacingError(f"Generation #{parent.id} has {len(parent.images)} image(s); there is no image "
                              f"{index + 1}.")
    return index


def _fields(request: GenerationRequest) -> dict[str, Any]:
    return {item.name: getattr(request, item.name) for item in dataclasses.fields(request)}


async def order_for(services: Services, parent: GenerationRecord, reading: Interpretation) -> WorkOrder:
    """The work a reading asks for on `parent`, built as the result buttons build it (UserFacingError)."""
    if reading.kind is Kind.REFUSE:
        raise UserFacingError(reading.reason or "I couldn't tell what to change.")
    if reading.kind is Kind.ACTION:
        return await _action_order(services, parent, reading)
    source = await source_request(services.store, parent)
    request = apply(reading, source)
    if reading.kind is Kind.NEW:
        return WorkOrder(GenerationKind.IMAGINE, _fields(request), parent=parent)
    if reading.prompt_edit == "instruction":
        # An instruction edit works on the parent's picture itself, its seed kept.
        image = parent.images[0]
        if edits_by_instruction(services.queue, request.model):  # built as the Edit form builds it
            request = await instruction_edit_request(services.store, services.queue, parent,
                                                     reading.instruction or request.prompt, seed=image.seed)
        else:
            request = request.replace(init_image=await services.store.read_image(image), seed=image.seed)
    return WorkOrder(GenerationKind.EDIT, _fields(request), parent=parent)


async def _action_order(services: Services, parent: GenerationRecord, reading: Interpretation) -> WorkOrder:
    store, queue, action = services.store, services.queue, reading.action
    if action == "reroll":
        request = reroll_request(await source_request(store, parent))
        return WorkOrder(GenerationKind.REROLL, _fields(request), parent=parent)
    index = _image(parent, reading.image)
    image = parent.images[index]
    if action == "variations":
        if parent.has_init_image:
            raise UserFacingError("Variations exist for pictures drawn from words only; this one started from "
                                  "an image. Try “again” or a change instead.")
        source = await source_request(store, parent)
        count = len(parent.images) if len(parent.images) > 1 else min(VARY_GRID, queue.limits.max_count)
        request = variation_request(source, image.seed, strong=True, count=count)
        return WorkOrder(GenerationKind.VARIATION, _fields(request), parent=parent)
    if action == "pick":
        source = await source_request(store, parent)
        request = request_for_image(parent, image, source.init_image)
        return WorkOrder(GenerationKind.PICK, _fields(request), parent=parent, source_index=index)
    png = await store.read_image(image)
    if action == "upscale":
        request = upscale_request(request_for_image(parent, image), png, image.seed)
        return WorkOrder(GenerationKind.UPSCALE, _fields(request), parent=parent)
    if action in EDIT_KINDS:
        source = request_for_image(parent, image)
        request = edit_request(source, png, image.seed, EDIT_MODES[action], queue.picture_limits(source.model),
                               factor=reading.factor, direction=reading.direction, region=reading.region,
                               multiple=queue.size_multiple(source.model))
        return WorkOrder(EDIT_KINDS[action], _fields(request), parent=parent)
    raise UserFacingError(f"I can't do “{action}” yet.")
