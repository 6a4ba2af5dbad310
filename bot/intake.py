"""The one entry point for new work: /imagine, every result button and the Edit form come through here.

`Intake.submit` turns a `WorkOrder` into a stored, queued job, in this order:

1. merge: server defaults → the member's defaults → typed options → inline --flags (later wins);
2. validate once (`GenerationService.prepare`), with no network I/O, so a refusal can be private;
3. reserve room in the render queue (the per-member and total caps), also before answering;
4. write the generation row (with the interaction token), then defer: an acknowledged command
   always has a row, and a restart finishes it;
5. hand it to the runner, which downloads an attached init image (slow: after the row exists),
   queues the render and follows it to a posted result.

It returns an outcome (accepted, or refused with the message to show privately) and shows nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import discord

from bot.reply import TOKEN_LIFETIME, Reply
from bot.record_requests import request_to_params
from generation import PARAMETERS, GenerationRequest, RequestError, parse_prompt_flags, size_for_aspect_ratio
from storage import GenerationKind

if TYPE_CHECKING:
    from bot.app import ImagineBot
    from generation import Reservation
    from storage import GenerationRecord

log = logging.getLogger(__name__)

INIT_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# What the file name says when Discord sends no content type.
INIT_IMAGE_EXTENSIONS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
MAX_INIT_IMAGE_BYTES = 10 * 1024 * 1024
MEMBER_DEFAULT_FIELDS = tuple(parameter.field for parameter in PARAMETERS if parameter.member_default)


@dataclass(frozen=True)
class WorkOrder:
    """What a command or button asks for, before defaults, flags and validation."""

    kind: GenerationKind
    fields: Mapping[str, Any]  # GenerationRequest fields: typed options, or a request derived from a parent
    with_defaults: bool = False  # lay server and member defaults under `fields` (/imagine)
    aspect_ratio: str | None = None  # "16:9": sets width and height unless both are typed
    attachment: discord.Attachment | None = None  # an init image still to download
    parent: GenerationRecord | None = None
    source_index: int | None = None  # a pick (U1–U4): the parent's image on its own


@dataclass(frozen=True)
class Accepted:
    record: GenerationRecord


@dataclass(frozen=True)
class Refused:
    message: str  # for the user, privately


Outcome = Accepted | Refused


@dataclass
class Draft:
    """A validated order, ready to record."""

    order: WorkOrder
    request: GenerationRequest
    reservation: Reservation | None = field(default=None)


def server_defaults(bot: ImagineBot) -> dict[str, Any]:
    """What /imagine uses when neither the command nor the member's defaults give a value."""
    settings = bot.settings
    return {
        "negative_prompt": "",
        "width": settings.default_width,
        "height": settings.default_height,
        "num_inference_steps": settings.default_steps,
        "guidance_scale": settings.default_guidance,
        "sampler": settings.default_sampler,
        "count": 1,
        "model": settings.model,
    }


def check_attachment(attachment: discord.Attachment) -> None:
    """What can be told without downloading: the declared type and the size (RequestError)."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if not content_type:
        content_type = INIT_IMAGE_EXTENSIONS.get(PurePosixPath(attachment.filename).suffix.lower(), "")
    if content_type not in INIT_IMAGE_TYPES:
        raise RequestError(
            f"init_image must be a PNG, JPEG or WebP picture; {attachment.filename!r} is "
            f"{content_type or 'of an unknown type'}.")
    if attachment.size > MAX_INIT_IMAGE_BYTES:
        raise RequestError(
            f"init_image is {attachment.size / 1048576:.1f} MiB; the limit is {MAX_INIT_IMAGE_BYTES // 1048576} MiB.")


class Intake:
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    async def submit(self, interaction: discord.Interaction[Any], order: WorkOrder) -> Outcome:
        """Validate, record, acknowledge and queue `order`; nothing is recorded when it is refused."""
        try:
            draft = await self.draft(interaction.user.id, order)
        except RequestError as error:
            return Refused(str(error))
        try:
            record = await self.bot.store.create_generation(
                owner_id=interaction.user.id, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
                kind=order.kind, parent_id=order.parent.id if order.parent else None,
                params=request_to_params(draft.request), init_image=draft.request.init_image,
                init_image_url=order.attachment.url if order.attachment is not None else None,
                source_index=order.source_index, interaction_token=interaction.token,
                interaction_expires_at=interaction.created_at + TOKEN_LIFETIME)
        except BaseException:
            if draft.reservation is not None:
                draft.reservation.release()
            raise
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as error:
            # Too late to answer (the 3 s passed): the row exists, so the result goes to the channel.
            log.warning("job #%s: could not acknowledge the interaction (%s); posting in the channel", record.id, error)
        self.bot.runner.start(record, draft.request, draft.reservation, Reply.from_interaction(interaction),
                              order.attachment)
        return Accepted(record)

    async def draft(self, owner_id: int, order: WorkOrder) -> Draft:
        """Merge and validate (RequestError), and reserve queue room for a render."""
        if order.kind is GenerationKind.PICK:
            # A pick copies an image that exists: nothing to render, validate or queue.
            return Draft(order, GenerationRequest(**order.fields))
        fields: dict[str, Any] = {}
        if order.with_defaults:
            fields.update({key: value for key, value in server_defaults(self.bot).items() if value is not None})
            member = await self.bot.store.member_defaults(owner_id)
            fields.update({key: value for key, value in member.items()
                           if key in MEMBER_DEFAULT_FIELDS and value is not None})
        typed = {key: value for key, value in order.fields.items() if value is not None}
        model = typed.get("model", fields.get("model", self.bot.settings.model))
        base_size = self.bot.settings.default_width or self.bot.service.native_size(model)
        if order.aspect_ratio is not None and not ("width" in typed and "height" in typed):
            ratio_w, ratio_h = (int(part) for part in order.aspect_ratio.split(":"))
            side = typed.get("width") or typed.get("height") or base_size
            typed["width"], typed["height"] = size_for_aspect_ratio(ratio_w, ratio_h, side)
        fields.update(typed)
        prompt, flags = parse_prompt_flags(str(fields.get("prompt", "")), base_size=base_size)
        fields.update(flags, prompt=prompt)
        if order.attachment is not None:
            check_attachment(order.attachment)
        elif order.with_defaults and "strength" in typed and fields.get("init_image") is None:
            raise RequestError("strength only applies with an init_image; attach one or leave strength out.")
        request = self.bot.service.prepare(GenerationRequest(**fields))
        return Draft(order, request, self.bot.service.reserve(str(owner_id)))
