"""The buttons under results and status lines, and the Edit modal.

Every button is a DynamicItem whose custom id carries the generation id (and image index), e.g.
`gen:reroll:42`, `gen:var:42:0`, `gen:up:42:3`. discord.py rebuilds the item from the id on every
click, and the record comes from storage, so buttons keep working after a restart. Only the owner
may use them; members with Manage Messages may also delete.
"""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands
from PIL import Image

from bot import presentation
from bot.errors import UserFacingError, report_unexpected, send_ephemeral
from bot.records import imagine_command_line, request_for_image, request_from_record, request_to_params
from bot.runner import Destination
from generation import (GenerationRequest, RequestError, apply_prompt_flags, reroll_request, upscale_request,
                        variation_request)
from storage import GenerationKind, GenerationStatus, ImageInput

if TYPE_CHECKING:
    from bot.runner import JobRunner
    from storage import GenerationRecord, Store

log = logging.getLogger(__name__)

def _runner(interaction: discord.Interaction) -> JobRunner:
    return interaction.client.runner  # type: ignore[attr-defined]


def _store(interaction: discord.Interaction) -> Store:
    return interaction.client.store  # type: ignore[attr-defined]


async def rerun(interaction: discord.Interaction, request: GenerationRequest, kind: GenerationKind,
                parent_id: int) -> None:
    """Validate (ephemeral error), then defer and hand the child generation to the runner."""
    runner = _runner(interaction)
    try:
        runner.validate(request)
    except UserFacingError as error:
        await send_ephemeral(interaction, str(error))
        return
    await interaction.response.defer(thinking=True)
    try:
        await runner.start_generation(interaction, request, kind, parent_id)
    except UserFacingError:
        pass  # already shown on the status message


async def _source_request(store: Store, record: GenerationRecord) -> GenerationRequest:
    init_image = await store.read_init_image(record.id) if record.has_init_image else None
    return request_from_record(record, init_image)


class GenerationButton:
    """Shared behaviour of the generation buttons: load the record, let only its owner in.

    Mixed into each DynamicItem (a DynamicItem subclass must name its template, so this is no base).
    """

    generation_id: int
    record: GenerationRecord
    moderators_may_use = False

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str]) -> Any:
        # Each template names its groups after the constructor's parameters.
        return cls(**{name: int(value) if value.isdigit() else value for name, value in match.groupdict().items()})

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # discord.py turns an exception here into a silent refusal, so report it ourselves.
        try:
            return await self._allowed(interaction)
        except Exception as error:
            await report_unexpected(interaction, error, job_id=self.generation_id,
                                    action=f"{type(self).__name__} check")
            return False

    async def _allowed(self, interaction: discord.Interaction) -> bool:
        allowed = interaction.client.settings.allowed_guilds  # type: ignore[attr-defined]
        if allowed and interaction.guild_id not in allowed:
            await send_ephemeral(interaction, "imagine-bot is not enabled in this server.")
            return False
        record = await _store(interaction).get(self.generation_id)
        if record is None or record.deleted:
            await send_ephemeral(interaction, f"Generation #{self.generation_id} no longer exists.")
            return False
        if record.owner_id != interaction.user.id:
            moderator = self.moderators_may_use and interaction.permissions.manage_messages
            if not moderator:
                await send_ephemeral(
                    interaction,
                    f"Not yours: only <@{record.owner_id}> can use the buttons of generation #{record.id}. "
                    "Use /imagine to make your own.")
                return False
        self.record = record
        return True

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            await self.act(interaction)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:  # nothing a click does may crash the bot
            await report_unexpected(interaction, error, job_id=self.generation_id, action=type(self).__name__)

    async def act(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


def _button(label: str, custom_id: str, *, emoji: str | None = None,
            style: discord.ButtonStyle = discord.ButtonStyle.secondary, row: int | None = None) -> discord.ui.Button:
    return discord.ui.Button(label=label, custom_id=custom_id, emoji=emoji, style=style, row=row)


class RerollButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                   template=r"gen:reroll:(?P<generation_id>[0-9]+)"):
    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Reroll", f"gen:reroll:{generation_id}", emoji="🔄", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: discord.Interaction) -> None:
        request = reroll_request(await _source_request(_store(interaction), self.record))
        await rerun(interaction, request, GenerationKind.REROLL, self.record.id)


def _image_index(record: GenerationRecord, index: int) -> int:
    if not 0 <= index < len(record.images):
        raise UserFacingError(f"Generation #{record.id} has no image {index + 1}.")
    return index


class VariationButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                      template=r"gen:var:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """V1–V4 under a grid: a grid of strong variations of that image."""

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button(f"V{index + 1}", f"gen:var:{generation_id}:{index}", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: discord.Interaction) -> None:
        image = self.record.images[_image_index(self.record, self.index)]
        source = await _source_request(_store(interaction), self.record)
        request = variation_request(source, image.seed, strong=True, count=self.record.count or 1)
        await rerun(interaction, request, GenerationKind.VARIATION, self.record.id)


class VaryButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                 template=r"gen:vary:(?P<generation_id>[0-9]+):(?P<index>[0-9]):(?P<how>subtle|strong)"):
    """Vary (Subtle) / Vary (Strong) under a single image."""

    def __init__(self, generation_id: int, index: int, how: str, row: int | None = None) -> None:
        label = "Vary (Subtle)" if how == "subtle" else "Vary (Strong)"
        super().__init__(_button(label, f"gen:vary:{generation_id}:{index}:{how}", emoji="🪄", row=row))
        self.generation_id = generation_id
        self.index = index
        self.how = how

    async def act(self, interaction: discord.Interaction) -> None:
        image = self.record.images[_image_index(self.record, self.index)]
        source = await _source_request(_store(interaction), self.record)
        request = variation_request(source, image.seed, strong=self.how == "strong", count=1)
        await rerun(interaction, request, GenerationKind.VARIATION, self.record.id)


class UpscaleButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                    template=r"gen:up:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """U1–U4: that image alone, at full size, as a generation of its own (so it gets its own buttons)."""

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button(f"U{index + 1}", f"gen:up:{generation_id}:{index}", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: discord.Interaction) -> None:
        record = self.record
        index = _image_index(record, self.index)
        await interaction.response.defer(thinking=True)
        store = _store(interaction)
        image = record.images[index]
        png = await store.read_image(image)
        source = await _source_request(store, record)
        request = request_for_image(record, image, source.init_image)
        child = await store.create_generation(
            owner_id=interaction.user.id, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
            kind=GenerationKind.UPSCALE, parent_id=record.id, params=request_to_params(request),
            init_image=request.init_image)
        with Image.open(io.BytesIO(png)) as opened:
            picture = opened.copy()
        done = await store.mark_done(child.id, [ImageInput(
            index=0, image=picture, seed=image.seed, variation_seed=image.variation_seed,
            variation_strength=image.variation_strength)], 0.0)
        await _runner(interaction).deliver(done, Destination(interaction.channel_id, interaction.guild_id, interaction))


class UpscaleTwiceButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                         template=r"gen:up2:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """Upscale 2×: re-render the image at twice the size, starting from the image itself."""

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button("Upscale 2×", f"gen:up2:{generation_id}:{index}", emoji="🔍", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: discord.Interaction) -> None:
        record = self.record
        image = record.images[_image_index(record, self.index)]
        png = await _store(interaction).read_image(image)
        request = upscale_request(request_for_image(record, image), png, image.seed)
        await rerun(interaction, request, GenerationKind.UPSCALE, record.id)


class EditModal(discord.ui.Modal):
    """Change the prompt (and negative prompt) of a generation and render it again."""

    def __init__(self, record: GenerationRecord) -> None:
        super().__init__(title=f"Edit generation #{record.id}", timeout=900)
        self.record = record
        self.prompt = discord.ui.TextInput(style=discord.TextStyle.paragraph, default=record.prompt[:1000],
                                           max_length=1000, custom_id="prompt")
        self.negative_prompt = discord.ui.TextInput(style=discord.TextStyle.paragraph, required=False,
                                                    default=(record.negative_prompt or "")[:1000],
                                                    max_length=1000, custom_id="negative_prompt")
        self.keep_seed = discord.ui.Checkbox(default=False, custom_id="keep_seed")
        self.add_item(discord.ui.Label(text="Prompt", component=self.prompt))
        self.add_item(discord.ui.Label(text="Negative prompt", component=self.negative_prompt))
        self.add_item(discord.ui.Label(text="Keep the seed", description="Same composition, new words",
                                       component=self.keep_seed))

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            source = await _source_request(_store(interaction), self.record)
            request = source.replace(
                prompt=self.prompt.value.strip(), negative_prompt=(self.negative_prompt.value or "").strip(),
                seed=self.record.seed if self.keep_seed.value else None)
            # The prompt box takes the same inline --flags as /imagine's prompt (and they win, as there).
            request = apply_prompt_flags(request, base_size=_flag_base_size(interaction, request.model))
            await rerun(interaction, request, GenerationKind.EDIT, self.record.id)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:
            await report_unexpected(interaction, error, job_id=self.record.id, action="edit")


def _flag_base_size(interaction: discord.Interaction, model: str) -> int:
    """The side that --ar scales from, as /imagine computes it."""
    settings = interaction.client.settings  # type: ignore[attr-defined]
    return settings.default_width or _runner(interaction).service.native_size(model)


class EditButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                 template=r"gen:edit:(?P<generation_id>[0-9]+)"):
    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Edit", f"gen:edit:{generation_id}", emoji="✏️", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(EditModal(self.record))


class InfoButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                 template=r"gen:info:(?P<generation_id>[0-9]+)"):
    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Info", f"gen:info:{generation_id}", emoji="ℹ️", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: discord.Interaction) -> None:
        request = request_from_record(self.record)
        line = imagine_command_line(request, with_init_image=self.record.has_init_image)
        await interaction.response.send_message(
            embed=presentation.info_embed(self.record, request, line), ephemeral=True)


class DeleteButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                   template=r"gen:del:(?P<generation_id>[0-9]+)"):
    moderators_may_use = True

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Delete", f"gen:del:{generation_id}", emoji="🗑️",
                                 style=discord.ButtonStyle.danger, row=row))
        self.generation_id = generation_id

    async def act(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        # The clicked message may be a /show re-post: the result message itself goes too.
        messages = [interaction.message] if interaction.message is not None else []
        record = self.record
        if record.message_id is not None and record.message_channel_id is not None and (
                interaction.message is None or interaction.message.id != record.message_id):
            channel = interaction.client.get_partial_messageable(record.message_channel_id, guild_id=record.guild_id)
            messages.append(channel.get_partial_message(record.message_id))
        await _store(interaction).delete_generation(record.id)
        for message in messages:
            try:
                await message.delete()
            except discord.HTTPException as error:
                log.info("generation #%s: message %s not deleted (%s)", record.id, message.id, error)
        await interaction.followup.send(f"Deleted generation #{record.id} and its images.", ephemeral=True)


class CancelButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button],
                   template=r"gen:cancel:(?P<generation_id>[0-9]+)"):
    moderators_may_use = True

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Cancel", f"gen:cancel:{generation_id}", emoji="✖", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: discord.Interaction) -> None:
        if self.record.status not in (GenerationStatus.QUEUED, GenerationStatus.RUNNING):
            await send_ephemeral(interaction, f"Job #{self.record.id} is already {self.record.status.value}.")
            return
        if _runner(interaction).service.cancel(str(self.record.id)):
            await send_ephemeral(interaction, f"Cancelled job #{self.record.id}.")
        else:
            await send_ephemeral(interaction, f"Job #{self.record.id} has already finished rendering.")


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    RerollButton, VariationButton, VaryButton, UpscaleButton, UpscaleTwiceButton,
    EditButton, InfoButton, DeleteButton, CancelButton,
)


def result_view(record: GenerationRecord) -> discord.ui.View:
    """U1–U4 and V1–V4 under a grid, Vary/Upscale 2× under a single image; then Reroll, Edit, Info, Delete.

    Variations exist for text-to-image only, so results made from an init image (Upscale 2× ones
    included) get no V / Vary buttons rather than buttons that can only refuse.
    """
    view = discord.ui.View(timeout=None)
    count = len(record.images)
    variations = not record.has_init_image
    if count > 1:
        for index in range(count):
            view.add_item(UpscaleButton(record.id, index, row=0))
        for index in range(count if variations else 0):
            view.add_item(VariationButton(record.id, index, row=1))
    else:
        if variations:
            view.add_item(VaryButton(record.id, 0, "subtle", row=0))
            view.add_item(VaryButton(record.id, 0, "strong", row=0))
        view.add_item(UpscaleTwiceButton(record.id, 0, row=0))
    view.add_item(RerollButton(record.id, row=2))
    view.add_item(EditButton(record.id, row=2))
    view.add_item(InfoButton(record.id, row=2))
    view.add_item(DeleteButton(record.id, row=2))
    return view


def status_view(generation_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(generation_id))
    return view


async def setup(bot: commands.Bot) -> None:
    # setup_hook registers these too; registering here as well (idempotent) makes a
    # `reload_extension("bot.cogs.buttons")` pick up the reloaded classes.
    bot.add_dynamic_items(*DYNAMIC_ITEMS)


async def teardown(bot: commands.Bot) -> None:
    bot.remove_dynamic_items(*DYNAMIC_ITEMS)
