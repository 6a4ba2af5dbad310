"""The one entry point for new work: /imagine, every result button and the Edit form come through here.

`Intake.submit` turns a `WorkOrder` into a stored, queued job, in this order:

1. merge: the operator's defaults → the server's /config defaults → the member's defaults → typed
   options → inline --flags (later wins);
2. validate once (`GenerationService.prepare`, the operator's limits), with no network I/O, so a refusal
   can be private; then the server's rules where the bot is in that server: allowed channels and
   models, banned words (prompt, negative prompt, flags), the daily image quota;
3. reserve room in the render queue (the per-member cap, lowered by the server's, and the total cap),
   also before answering;
4. write the generation row (with the interaction token), then defer: an acknowledged command
   always has a row, and a restart finishes it;
5. hand it to the runner, which downloads an attached init image (slow: after the row exists),
   queues the render and follows it to a posted result.

It returns an outcome (accepted, or refused with the message to show privately) and shows nothing itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot import modlog, policy
from bot.instruction_edits import blend_references
from bot.reply import TOKEN_LIFETIME, Reply
from generation.queue.records import request_to_params
from generation.telemetry import Refusal, events
from generation import (PARAMETERS, GenerationRequest, QueueFull, RequestError, expand_prompt, parse_prompt_flags,
                        size_for_aspect_ratio)
from storage import GenerationKind, GuildConfigRecord

if TYPE_CHECKING:
    from bot.reply import Reply
    from bot.services import Services
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
    more_attachments: tuple[discord.Attachment, ...] = ()  # /blend: the further sources, downloaded by the job
    parent: GenerationRecord | None = None
    source_index: int | None = None  # a pick (U1–U4): the parent's image on its own


@dataclass(frozen=True)
class Accepted:
    record: GenerationRecord


@dataclass(frozen=True)
class Refused:
    message: str  # for the user, privately


Outcome = Accepted | Refused


@dataclass(frozen=True)
class Place:
    """Where work is asked for: the server (None in DMs), the channel, a thread's parent channel."""

    guild_id: int | None = None
    channel_id: int | None = None
    parent_id: int | None = None

    @classmethod
    def of(cls, interaction: discord.Interaction[Any]) -> Place:
        channel = interaction.channel
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        return cls(interaction.guild_id, interaction.channel_id, parent_id)


class PolicyRefusal(RequestError):
    """A server's rule refused the work; `log` is the moderators' log line (None: not worth logging)."""

    def __init__(self, message: str, log: str | None = None, refusal: Refusal = Refusal.VALIDATION) -> None:
        super().__init__(message)
        self.log = log
        self.refusal = refusal  # the reason label of imagine_refusals_total


@dataclass
class Draft:
    """A validated order, ready to record."""

    order: WorkOrder
    request: GenerationRequest
    reservation: Reservation | None = field(default=None)


def server_defaults(services: Services, model: str | None = None) -> dict[str, Any]:
    """What /imagine uses when neither the command nor the member's defaults give a value.

    The model's own defaults (its family's, or its MODELS_FILE entry's), then the operator's DEFAULT_*
    settings where set (they apply to every model).
    """
    settings = services.settings
    model = model or settings.default_model
    operator = {"num_inference_steps": settings.default_steps, "guidance_scale": settings.default_guidance,
                "sampler": settings.default_sampler}
    return {
        "negative_prompt": "",
        "width": settings.default_width,
        "height": settings.default_height,
        "count": 1,
        "model": model,
        **services.queue.model_defaults(model),
        **{key: value for key, value in operator.items() if value is not None},
    }


def check_attachment(attachment: discord.Attachment, option: str = "init_image") -> None:
    """What can be told without downloading: the declared type and the size (RequestError naming `option`)."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if not content_type:
        content_type = INIT_IMAGE_EXTENSIONS.get(PurePosixPath(attachment.filename).suffix.lower(), "")
    if content_type not in INIT_IMAGE_TYPES:
        raise RequestError(
            f"{option} must be a PNG, JPEG or WebP picture; {attachment.filename!r} is "
            f"{content_type or 'of an unknown type'}.")
    if attachment.size > MAX_INIT_IMAGE_BYTES:
        raise RequestError(
            f"{option} is {attachment.size / 1048576:.1f} MiB; the limit is {MAX_INIT_IMAGE_BYTES // 1048576} MiB.")


def refusal_of(error: RequestError) -> Refusal:
    """The metric's reason for a refusal: a server rule says which; a full queue is a cap."""
    if isinstance(error, PolicyRefusal):
        return error.refusal
    return Refusal.CAPS if isinstance(error, QueueFull) else Refusal.VALIDATION


class JobStarter(Protocol):
    """What intake needs of the job runner: carry a recorded job on, run a side task."""

    def start(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
              reply: Reply | None, attachment: discord.Attachment | None = None) -> None: ...

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]: ...


class Intake:
    def __init__(self, client: discord.Client, services: Services, runner: JobStarter) -> None:
        self.bot = client
        self.services = services
        self.store = services.store
        self.queue = services.queue
        self.settings = services.settings
        self.runner = runner
        # One member's submissions are drafted and recorded one at a time, so two quick commands cannot
        # both pass a daily quota that has room for one.
        self._member_locks: dict[int, asyncio.Lock] = {}

    def member_lock(self, owner_id: int) -> asyncio.Lock:
        """The lock that drafts and records one member's submissions one at a time (commands and turns)."""
        return self._member_locks.setdefault(owner_id, asyncio.Lock())

    async def guild_config(self, guild_id: int | None) -> GuildConfigRecord | None:
        """The server's /config where the bot is installed in that server; None in DMs and user installs."""
        if guild_id is None or self.bot.get_guild(guild_id) is None:
            return None
        return await self.store.guild_config(guild_id)

    async def submit(self, interaction: discord.Interaction[Any], order: WorkOrder) -> Outcome:
        """Validate, record, acknowledge and queue `order`; nothing is recorded when it is refused.

        A prompt with `{a, b}` permutations or `--repeat N` makes several jobs, all or none: each is its
        own generation; the first edits the command's reply, the others get a follow-up message each.
        """
        place = Place.of(interaction)
        lock = self._member_locks.setdefault(interaction.user.id, asyncio.Lock())
        async with lock:
            drafts: list[Draft] = []
            try:
                for one in self.expand(order):
                    # The whole command must fit the daily quota: earlier drafts count as already used.
                    drafted = sum(draft.request.count for draft in drafts)
                    drafts.append(await self.draft(interaction.user.id, one, place, drafted=drafted))
            except RequestError as error:
                self.services.metrics.refused(refusal_of(error))
                for draft in drafts:
                    if draft.reservation is not None:
                        draft.reservation.release()
                if isinstance(error, PolicyRefusal) and error.log is not None:
                    self.runner.spawn(
                        modlog.post(self.bot, self.store, place.guild_id, "refusal",
                                    f"<@{interaction.user.id}>: {error.log} in "
                                    f"{modlog.link(place.guild_id, place.channel_id)}"),
                        name="mod log")
                return Refused(str(error))
            records = []
            try:
                for index, draft in enumerate(drafts):
                    # Only the first job may edit the reply after a restart: the token names that message.
                    first = index == 0
                    records.append(await self.store.create_generation(
                        owner_id=interaction.user.id, guild_id=interaction.guild_id,
                        channel_id=interaction.channel_id, kind=order.kind,
                        parent_id=order.parent.id if order.parent else None,
                        params=request_to_params(draft.request), init_image=draft.request.init_image,
                        init_image_url="\n".join(attachment.url for attachment in (draft.order.attachment,
                                                                                    *draft.order.more_attachments)
                                                  if attachment is not None) or None,
                        source_index=order.source_index, interaction_token=interaction.token if first else None,
                        interaction_expires_at=interaction.created_at + TOKEN_LIFETIME if first else None))
            except BaseException:
                for draft in drafts[len(records):]:
                    if draft.reservation is not None:
                        draft.reservation.release()
                for record, draft in zip(records, drafts):
                    # Recorded but not started: queued rows that a restart would render.
                    self.runner.start(record, draft.request, draft.reservation, None, draft.order.attachment)
                raise
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as error:
            # Too late to answer (the 3 s passed): the rows exist, so the results go to the channel.
            log.warning("job #%s: could not acknowledge the interaction (%s); posting in the channel",
                        records[0].id, error)
        for record in records:
            events.job_queued(self.services.metrics, record)
        replies = [Reply.from_interaction(interaction)] + await self.more_replies(interaction, records[1:])
        for record, draft, reply in zip(records, drafts, replies):
            self.runner.start(record, draft.request, draft.reservation, reply, draft.order.attachment)
        return Accepted(records[0])

    def expand(self, order: WorkOrder) -> list[WorkOrder]:
        """One order per prompt that `{a, b}` permutations and `--repeat N` ask for (picks copy: no prompt)."""
        if order.kind is GenerationKind.PICK or "prompt" not in order.fields:
            return [order]
        prompts = expand_prompt(str(order.fields["prompt"]))
        return [dataclasses.replace(order, fields={**order.fields, "prompt": prompt}) for prompt in prompts]

    async def more_replies(self, interaction: discord.Interaction[Any], records: list[GenerationRecord],
                           ) -> list[Reply | None]:
        """A follow-up message for each further job of one command, to be its status line and result."""
        if not records:
            return []
        replies: list[Reply | None] = []
        try:
            # The first follow-up after a defer would replace the "thinking" reply: give it content first.
            await interaction.edit_original_response(content=f"⏳ {len(records) + 1} jobs queued…")
            for record in records:
                message = await interaction.followup.send(f"⏳ Job #{record.id} queued…", wait=True)
                replies.append(Reply.from_interaction(interaction, message_id=message.id))
        except discord.HTTPException as error:
            log.info("follow-up status messages failed (%s); those results go to the channel", error)
        return replies + [None] * (len(records) - len(replies))

    async def draft(self, owner_id: int, order: WorkOrder, place: Place | None = None, drafted: int = 0) -> Draft:
        """Merge and validate (RequestError; PolicyRefusal for a server's rule), and reserve queue room.

        `drafted`: images this command's earlier drafts ask for, counted against the daily quota too.
        """
        place = place or Place()
        config = await self.guild_config(place.guild_id)
        if config is not None and not policy.channel_allowed(config.allowed_channel_ids,
                                                              (place.channel_id, place.parent_id)):
            channels = ", ".join(f"<#{channel_id}>" for channel_id in config.allowed_channel_ids)
            raise PolicyRefusal(f"This server allows image generation only in {channels}.", refusal=Refusal.CHANNEL)
        if order.kind is GenerationKind.PICK:
            # A pick copies an image that exists: nothing to render, validate or queue.
            return Draft(order, GenerationRequest(**order.fields))
        fields: dict[str, Any] = {}
        # An inline --model chooses whose defaults and sizes apply, as the option would (the flag wins).
        flag_model = parse_prompt_flags(str(order.fields.get("prompt") or ""))[1].get("model")
        if order.with_defaults:
            # The model first: its own defaults go under everything else.
            model = flag_model or order.fields.get("model") or (config.defaults.get("model") if config is not None else None)
            fields.update({key: value for key, value in server_defaults(self.services, model).items() if value is not None})
            if config is not None:
                fields.update({key: value for key, value in config.defaults.items()
                               if key in policy.SERVER_DEFAULT_FIELDS and value is not None})
            member = await self.store.member_defaults(owner_id)
            fields.update({key: value for key, value in member.items()
                           if key in MEMBER_DEFAULT_FIELDS and value is not None})
        typed = {key: value for key, value in order.fields.items() if value is not None}
        model = flag_model or typed.get("model", fields.get("model", self.settings.default_model))
        base_size = self.settings.default_width or self.queue.native_size(model)
        multiple = self.queue.size_multiple(model)
        if order.aspect_ratio is not None and not ("width" in typed and "height" in typed):
            ratio_w, ratio_h = (int(part) for part in order.aspect_ratio.split(":"))
            side = typed.get("width") or typed.get("height") or base_size
            typed["width"], typed["height"] = size_for_aspect_ratio(ratio_w, ratio_h, side, multiple)
        fields.update(typed)
        raw_prompt = str(fields.get("prompt", ""))  # with its --flags, which are checked for banned words too
        prompt, flags = parse_prompt_flags(raw_prompt, base_size=base_size, multiple=multiple)
        fields.update(flags, prompt=prompt)
        for number, attachment in enumerate((order.attachment, *order.more_attachments), start=1):
            if attachment is not None:  # named as the member typed it: /blend's options are image1…image5
                check_attachment(attachment, f"image{number}" if order.kind is GenerationKind.BLEND else "init_image")
        if order.attachment is None and order.with_defaults and "strength" in typed and fields.get("init_image") is None:
            raise RequestError("strength only applies with an init_image; attach one or leave strength out.")
        if order.kind is GenerationKind.BLEND and order.attachment is not None:
            # /blend with words on a model that takes several pictures: an instruction edit with references.
            references = blend_references(fields, order.more_attachments, self.queue.instruction_pictures(model))
            if references is not None:
                order = dataclasses.replace(order, more_attachments=())
                fields.update(references)
        if (order.attachment is not None and order.kind in (GenerationKind.IMAGINE, GenerationKind.BLEND)
                and self.queue.instruction_pictures(model) and fields.get("edit_mode") != "blend"):
            fields["edit_mode"] = "instruction"  # the job downloads the picture, then sets its size (bot.instruction_edits)
        request = self.queue.prepare(GenerationRequest(**fields))
        if config is not None:
            await self.check_server_rules(config, owner_id, place, request, raw_prompt, drafted)
        cap = config.queue_cap if config is not None and config.queue_cap else None
        return Draft(order, request, self.queue.reserve(str(owner_id), cap))

    async def check_server_rules(self, config: GuildConfigRecord, owner_id: int, place: Place,
                                 request: GenerationRequest, raw_prompt: str, drafted: int = 0) -> None:
        """PolicyRefusal when the server's allowed models, banned words or daily quota refuse `request`."""
        if config.allowed_models and request.model not in config.allowed_models:
            raise PolicyRefusal(f"This server allows these models only: {', '.join(config.allowed_models)}.")
        found = policy.banned_phrase_in((raw_prompt, request.prompt, request.negative_prompt or ""),
                                        config.banned_words)
        if found is not None:
            # The member is not told which word: that would teach the list.
            raise PolicyRefusal(
                "This prompt uses a word or phrase this server does not allow, so nothing was queued. "
                "Rephrase it and try again.",
                log=f"prompt refused (banned word “{found}”): “{discord.utils.escape_markdown(raw_prompt[:300])}”",
                refusal=Refusal.BANNED_WORD)
        if config.daily_quota:
            start, reset = policy.quota_window(discord.utils.utcnow())
            used = await self.store.images_made_since(owner_id, place.guild_id, start)
            asking = drafted + request.count  # the whole command, all or none
            if used + asking > config.daily_quota:
                left = max(config.daily_quota - used, 0)
                asked = f"; this command asks for at least {asking}" if drafted and left else (
                    f"; this request asks for {request.count}" if request.count > 1 and left else "")
                raise PolicyRefusal(
                    f"You have used {used} of this server's {config.daily_quota} images for today "
                    f"({left} left{asked}). The quota resets {discord.utils.format_dt(reset, 'R')} "
                    f"({discord.utils.format_dt(reset, 't')}).",
                    log=f"daily quota reached ({used}/{config.daily_quota} images)", refusal=Refusal.QUOTA)
