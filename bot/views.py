"""The buttons under results and status lines, the Edit form, and the views that hold them.

Every button is a DynamicItem whose custom id carries the generation id (and image index), e.g.
`gen:reroll:42`, `gen:var:42:0`, `gen:pick:42:3`. discord.py rebuilds the item from the id on every
click, and the record comes from storage, so buttons keep working after a restart. Only the owner
may use them; members with Manage Messages may also delete and cancel. New work goes through the
bot's one entry point (`Intake.submit`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot import modlog, presentation
from bot.errors import UserFacingError, report_unexpected, send_ephemeral
from bot.intake import Refused, WorkOrder
from bot.record_requests import reproduce_options, reproduce_prompt, request_for_image, request_from_record
from generation import GenerationRequest, RequestError, reroll_request, upscale_request, variation_request
from generation.editing import CELL_NAMES, ZOOM_RANGE, edit_request
from generation.variants import image_variation_request
from storage import GenerationKind, GenerationStatus

if TYPE_CHECKING:
    from bot.app import ImagineBot
    from storage import GenerationRecord, ImageRecord, Store

log = logging.getLogger(__name__)
VARY_GRID = 4
Interaction = discord.Interaction["ImagineBot"]


async def submit_child(interaction: Interaction, parent: GenerationRecord, kind: GenerationKind,
                       request: GenerationRequest, source_index: int | None = None) -> None:
    """New work derived from `parent`, through the bot's one entry point; a refusal is private."""
    fields = {item.name: getattr(request, item.name) for item in dataclasses.fields(request)}
    order = WorkOrder(kind, fields, parent=parent, source_index=source_index)
    outcome = await interaction.client.intake.submit(interaction, order)
    if isinstance(outcome, Refused):
        await send_ephemeral(interaction, outcome.message)


async def _source_request(store: Store, record: GenerationRecord) -> GenerationRequest:
    init_image = await store.read_init_image(record.id) if record.has_init_image else None
    return request_from_record(record, init_image)


async def _variation_of(interaction: Interaction, record: GenerationRecord, image: ImageRecord, *, strong: bool,
                        count: int) -> GenerationRequest:
    """Variations of one image: subseed noise for text-to-image, else an img2img pass from the image itself."""
    source = await _source_request(interaction.client.store, record)
    if source.init_image is None and source.edit_mode is None:
        return variation_request(source, image.seed, strong=strong, count=count)
    png = await interaction.client.store.read_image(image)
    return image_variation_request(source, png, strong=strong, count=count)


class GenerationButton:
    """Shared behaviour of the generation buttons: load the record, check who may use it.

    Buttons that build new work on a result (reroll, U, V, Vary, Upscale) and Info are for anyone who
    can see it, as on Midjourney: the new generation is theirs (their queue share and history, the
    parent recorded), unless the operator turned SHARE_RESULTS off. Edit, Delete and Cancel stay with
    the owner and moderators (Manage Messages).
    Mixed into each DynamicItem (a DynamicItem subclass must name its template, so this is no base).
    """

    generation_id: int
    record: GenerationRecord
    open_to_everyone = False  # when results are shared

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str]) -> Any:
        # Each template names its groups after the constructor's parameters.
        return cls(**{name: int(value) if value.isdigit() else value for name, value in match.groupdict().items()})

    # The three discord.py overrides take Interaction[Any]: DynamicItem declares them generic in the
    # client type, so a narrower Interaction["ImagineBot"] would not be a compatible override.
    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        # discord.py turns an exception here into a silent refusal, so report it ourselves.
        try:
            return await self._allowed(interaction)
        except Exception as error:
            await report_unexpected(interaction, error, job_id=self.generation_id,
                                    action=f"{type(self).__name__} check")
            return False

    async def _allowed(self, interaction: Interaction) -> bool:
        allowed = interaction.client.settings.allowed_guilds
        if allowed and interaction.guild_id not in allowed:
            await send_ephemeral(interaction, "imagine-bot is not enabled in this server.")
            return False
        record = await interaction.client.store.get(self.generation_id)
        if record is None or record.deleted:
            await send_ephemeral(interaction, f"Generation #{self.generation_id} no longer exists.")
            return False
        if record.owner_id != interaction.user.id:
            shared = self.open_to_everyone and interaction.client.settings.share_results
            if not shared and not interaction.permissions.manage_messages:
                await send_ephemeral(
                    interaction,
                    f"Not yours: only <@{record.owner_id}> (or a moderator) can use this button of generation "
                    f"#{record.id}. Use /imagine to make your own.")
                return False
        self.record = record
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self.act(interaction)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:  # nothing a click does may crash the bot
            await report_unexpected(interaction, error, job_id=self.generation_id, action=type(self).__name__)

    async def act(self, interaction: Interaction) -> None:
        raise NotImplementedError


def _button(label: str, custom_id: str, *, emoji: str | None = None, style: discord.ButtonStyle = discord.ButtonStyle.secondary,
            row: int | None = None) -> discord.ui.Button[discord.ui.View]:
    return discord.ui.Button(label=label, custom_id=custom_id, emoji=emoji, style=style, row=row)


class RerollButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                   template=r"gen:reroll:(?P<generation_id>[0-9]+)"):
    open_to_everyone = True

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Reroll", f"gen:reroll:{generation_id}", emoji="🔄", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        request = reroll_request(await _source_request(interaction.client.store, self.record))
        await submit_child(interaction, self.record, GenerationKind.REROLL, request)


def _image_index(record: GenerationRecord, index: int) -> int:
    if not 0 <= index < len(record.images):
        raise UserFacingError(f"Generation #{record.id} has no image {index + 1}.")
    return index


class VariationButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                      template=r"gen:var:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """V1–V4 under a grid: a grid of strong variations of that image."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button(f"V{index + 1}", f"gen:var:{generation_id}:{index}", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        image = self.record.images[_image_index(self.record, self.index)]
        request = await _variation_of(interaction, self.record, image, strong=True, count=self.record.count or 1)
        await submit_child(interaction, self.record, GenerationKind.VARIATION, request)


class VaryButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=r"gen:vary:(?P<generation_id>[0-9]+):(?P<index>[0-9]):(?P<how>subtle|strong)"):
    """Vary (Subtle) / Vary (Strong) under a single image."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, how: str, row: int | None = None) -> None:
        label = "Vary (Subtle)" if how == "subtle" else "Vary (Strong)"
        super().__init__(_button(label, f"gen:vary:{generation_id}:{index}:{how}", emoji="🪄", row=row))
        self.generation_id = generation_id
        self.index = index
        self.how = how

    async def act(self, interaction: Interaction) -> None:
        image = self.record.images[_image_index(self.record, self.index)]
        # A grid, as V1–V4 give (Midjourney's Vary does the same): up to 4 images, within the operator's limit.
        count = min(VARY_GRID, interaction.client.service.limits.max_count)
        request = await _variation_of(interaction, self.record, image, strong=self.how == "strong", count=count)
        await submit_child(interaction, self.record, GenerationKind.VARIATION, request)


class PickButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=r"gen:(?:up|pick):(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """U1–U4: that image of a grid on its own, as a generation of its own (so it gets its own buttons).

    It is a pick, not an upscale: the image is copied, not rendered again. (`gen:up:` ids are the
    buttons of results posted before this name.)
    """

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button(f"U{index + 1}", f"gen:pick:{generation_id}:{index}", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        record = self.record
        image = record.images[_image_index(record, self.index)]
        source = await _source_request(interaction.client.store, record)
        request = request_for_image(record, image, source.init_image)
        await submit_child(interaction, record, GenerationKind.PICK, request, source_index=self.index)


class UpscaleTwiceButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                         template=r"gen:up2:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """Upscale 2×: re-render the image at twice the size, starting from the image itself."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button("Upscale 2×", f"gen:up2:{generation_id}:{index}", emoji="🔍", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        record = self.record
        image = record.images[_image_index(record, self.index)]
        png = await interaction.client.store.read_image(image)
        request = upscale_request(request_for_image(record, image), png, image.seed)
        await submit_child(interaction, record, GenerationKind.UPSCALE, request)


class EditModal(discord.ui.Modal):
    """Change the prompt (and negative prompt) of a generation and render it again."""

    def __init__(self, record: GenerationRecord) -> None:
        super().__init__(title=f"Edit generation #{record.id}", timeout=900)
        self.record = record
        self.prompt: discord.ui.TextInput[EditModal] = discord.ui.TextInput(style=discord.TextStyle.paragraph, default=record.prompt[:1000],
                                           max_length=1000, custom_id="prompt")
        self.negative_prompt: discord.ui.TextInput[EditModal] = discord.ui.TextInput(style=discord.TextStyle.paragraph, required=False,
                                                    default=(record.negative_prompt or "")[:1000],
                                                    max_length=1000, custom_id="negative_prompt")
        self.keep_seed: discord.ui.Checkbox[EditModal] = discord.ui.Checkbox(default=False, custom_id="keep_seed")
        self.add_item(discord.ui.Label(text="Prompt", component=self.prompt))
        self.add_item(discord.ui.Label(text="Negative prompt", component=self.negative_prompt))
        self.add_item(discord.ui.Label(text="Keep the seed", description="Same composition, new words",
                                       component=self.keep_seed))

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            source = await _source_request(interaction.client.store, self.record)
            # The prompt box takes the same inline --flags as /imagine's prompt (the entry point parses them).
            request = source.replace(
                prompt=self.prompt.value.strip(), negative_prompt=(self.negative_prompt.value or "").strip(),
                seed=self.record.seed if self.keep_seed.value else None)
            await submit_child(interaction, self.record, GenerationKind.EDIT, request)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:
            await report_unexpected(interaction, error, job_id=self.record.id, action="edit")


class EditButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=r"gen:edit:(?P<generation_id>[0-9]+)"):
    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Edit", f"gen:edit:{generation_id}", emoji="✏️", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(EditModal(self.record))


class InfoButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=r"gen:info:(?P<generation_id>[0-9]+)"):
    open_to_everyone = True

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Info", f"gen:info:{generation_id}", emoji="ℹ️", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        request = request_from_record(self.record)
        options = reproduce_options(request, with_init_image=self.record.has_init_image)
        await interaction.response.send_message(
            embed=presentation.info_embed(self.record, request, reproduce_prompt(request), options), ephemeral=True)


class DeleteButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                   template=r"gen:del:(?P<generation_id>[0-9]+)"):

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Delete", f"gen:del:{generation_id}", emoji="🗑️",
                                 style=discord.ButtonStyle.danger, row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        # The clicked message may be a /show re-post: the result message itself goes too.
        messages: list[discord.Message | discord.PartialMessage] = (
            [interaction.message] if interaction.message is not None else [])
        record = self.record
        if record.message_id is not None and record.message_channel_id is not None and (
                interaction.message is None or interaction.message.id != record.message_id):
            channel = interaction.client.get_partial_messageable(record.message_channel_id, guild_id=record.guild_id)
            messages.append(channel.get_partial_message(record.message_id))
        await interaction.client.store.delete_generation(record.id)
        for message in messages:
            try:
                await message.delete()
            except discord.HTTPException as error:
                log.info("generation #%s: message %s not deleted (%s)", record.id, message.id, error)
        await interaction.followup.send(f"Deleted generation #{record.id} and its images.", ephemeral=True)
        if interaction.user.id != record.owner_id:
            where = modlog.link(interaction.guild_id, interaction.channel_id,
                                interaction.message.id if interaction.message is not None else None)
            await modlog.post(interaction.client, interaction.client.store, interaction.guild_id, "deletion",
                              f"<@{interaction.user.id}> deleted generation #{record.id} of <@{record.owner_id}> "
                              f"(“{discord.utils.escape_markdown(record.prompt[:200])}”) — was at {where}")


class CancelButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                   template=r"gen:cancel:(?P<generation_id>[0-9]+)"):

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(_button("Cancel", f"gen:cancel:{generation_id}", emoji="✖", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        if self.record.status not in (GenerationStatus.QUEUED, GenerationStatus.RUNNING):
            await send_ephemeral(interaction, f"Job #{self.record.id} is already {self.record.status.value}.")
            return
        if interaction.client.service.cancel(str(self.record.id)):
            await send_ephemeral(interaction, f"Cancelled job #{self.record.id}.")
        else:
            await send_ephemeral(interaction, f"Job #{self.record.id} has already finished rendering.")


# ----------------------------------------------------------------------------- edits of one image

ZOOM_BUTTONS = (20, 15)  # Zoom Out 2× and 1.5× (tenths, for the custom id)
PAN_ARROWS = {"left": "⬅️", "right": "➡️", "up": "⬆️", "down": "⬇️"}
EDIT_KINDS = {"zoom": GenerationKind.ZOOM, "square": GenerationKind.SQUARE, "pan": GenerationKind.PAN,
              "region": GenerationKind.REGION}


async def submit_edit(interaction: Interaction, record: GenerationRecord, index: int, mode: str, *,
                      factor: float | None = None, direction: str | None = None, region: str | None = None,
                      prompt: str | None = None) -> None:
    """Zoom, square, pan or region: a child generation that inpaints part of a larger (or the same) canvas."""
    image = record.images[_image_index(record, index)]
    png = await interaction.client.store.read_image(image)
    source = request_for_image(record, image)
    service = interaction.client.service
    request = edit_request(source, png, image.seed, mode, service.limits, factor=factor, direction=direction,
                           region=region, prompt=prompt, multiple=service.size_multiple(source.model))
    await submit_child(interaction, record, EDIT_KINDS[mode], request)


class ZoomOutButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                    template=r"gen:zoom:(?P<generation_id>[0-9]+):(?P<index>[0-9]):(?P<tenths>[0-9]+)"):
    """Zoom Out 2× / 1.5×: a larger canvas around the image, its new border inpainted (same prompt and seed)."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, tenths: int, row: int | None = None) -> None:
        super().__init__(_button(f"Zoom Out {tenths / 10:g}×", f"gen:zoom:{generation_id}:{index}:{tenths}",
                                 emoji="🔎", row=row))
        self.generation_id = generation_id
        self.index = index
        self.tenths = tenths

    async def act(self, interaction: Interaction) -> None:
        await submit_edit(interaction, self.record, self.index, "zoom", factor=self.tenths / 10)


class CustomZoomModal(discord.ui.Modal):
    """Custom Zoom: a factor from 1.0 to 2.0 and the prompt for the whole new picture."""

    def __init__(self, record: GenerationRecord, index: int) -> None:
        super().__init__(title=f"Custom Zoom of #{record.id}", timeout=900)
        self.record = record
        self.index = index
        self.prompt: discord.ui.TextInput[CustomZoomModal] = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, default=record.prompt[:1000], max_length=1000, custom_id="prompt")
        self.factor: discord.ui.TextInput[CustomZoomModal] = discord.ui.TextInput(
            default="1.5", max_length=4, custom_id="factor")
        self.add_item(discord.ui.Label(text="Prompt", component=self.prompt))
        self.add_item(discord.ui.Label(text="Zoom factor", description=f"From {ZOOM_RANGE[0]:g} to {ZOOM_RANGE[1]:g}",
                                       component=self.factor))

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            try:
                factor = float(self.factor.value.strip().rstrip("×x"))
            except ValueError:
                raise UserFacingError(f"The zoom factor must be a number from {ZOOM_RANGE[0]:g} to "
                                      f"{ZOOM_RANGE[1]:g}, got {self.factor.value!r}.") from None
            await submit_edit(interaction, self.record, self.index, "zoom", factor=factor, prompt=self.prompt.value)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:
            await report_unexpected(interaction, error, job_id=self.record.id, action="custom zoom")


class CustomZoomButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                       template=r"gen:czoom:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button("Custom Zoom", f"gen:czoom:{generation_id}:{index}", emoji="🔎", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(CustomZoomModal(self.record, self.index))


class MakeSquareButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                       template=r"gen:square:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """Make Square: extend the shorter side to the longer one, inpainting the new bands."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button("Make Square", f"gen:square:{generation_id}:{index}", emoji="🔲", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await submit_edit(interaction, self.record, self.index, "square")


class PanButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                template=r"gen:pan:(?P<generation_id>[0-9]+):(?P<index>[0-9]):(?P<direction>left|right|up|down)"):
    """Pan: extend one side by half the image and inpaint the new strip."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, direction: str, row: int | None = None) -> None:
        button = discord.ui.Button["discord.ui.View"](
            custom_id=f"gen:pan:{generation_id}:{index}:{direction}", emoji=PAN_ARROWS[direction],
            style=discord.ButtonStyle.secondary, row=row)
        super().__init__(button)
        self.generation_id = generation_id
        self.index = index
        self.direction = direction

    async def act(self, interaction: Interaction) -> None:
        await submit_edit(interaction, self.record, self.index, "pan", direction=self.direction)


class VaryRegionModal(discord.ui.Modal):
    """Vary (Region): cells of a 3×3 grid over the image, and an optional new prompt for them."""

    def __init__(self, record: GenerationRecord, index: int) -> None:
        super().__init__(title=f"Vary (Region) of #{record.id}", timeout=900)
        self.record = record
        self.index = index
        self.cells: discord.ui.Select[VaryRegionModal] = discord.ui.Select(
            custom_id="cells", min_values=1, max_values=len(CELL_NAMES),
            options=[discord.SelectOption(label=name.capitalize(), value=str(cell))
                     for cell, name in enumerate(CELL_NAMES)])
        self.prompt: discord.ui.TextInput[VaryRegionModal] = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, required=False, max_length=1000, custom_id="prompt",
            placeholder=record.prompt[:100])
        self.add_item(discord.ui.Label(text="Region", description="Cells of a 3×3 grid over the image",
                                       component=self.cells))
        self.add_item(discord.ui.Label(text="Prompt for the region", description="Empty: the same prompt",
                                       component=self.prompt))

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            await submit_edit(interaction, self.record, self.index, "region", region="+".join(self.cells.values),
                              prompt=self.prompt.value or None)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:
            await report_unexpected(interaction, error, job_id=self.record.id, action="vary region")


class VaryRegionButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                       template=r"gen:region:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(_button("Vary (Region)", f"gen:region:{generation_id}:{index}", emoji="🖌️", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(VaryRegionModal(self.record, self.index))


# ----------------------------------------------------------------------------- /describe

DESCRIBE_LINE = re.compile(r"^\*\*([1-4])\.\*\* (.+)$", re.MULTILINE)


def describe_text(prompts: list[str]) -> str:
    """The /describe message: numbered prompts, which its buttons read back (so they survive restarts)."""
    lines = [f"**{number}.** {discord.utils.escape_markdown(prompt)}" for number, prompt in enumerate(prompts, 1)]
    return "🔍 Prompts for this image — press a number to /imagine it:\n" + "\n".join(lines)


def described_prompts(text: str) -> dict[int, str]:
    return {int(number): _unescape(prompt) for number, prompt in DESCRIBE_LINE.findall(text or "")}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class DescribeButton(discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                     template=r"describe:(?P<owner_id>[0-9]+):(?P<number>[1-4])"):
    """1–4 under a /describe answer: /imagine that prompt. Anyone may, unless SHARE_RESULTS is off."""

    def __init__(self, owner_id: int, number: int) -> None:
        super().__init__(_button(str(number), f"describe:{owner_id}:{number}", emoji="🎨",
                                 style=discord.ButtonStyle.primary))
        self.owner_id = owner_id
        self.number = number

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str]) -> DescribeButton:
        return cls(int(match["owner_id"]), int(match["number"]))

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id != self.owner_id and not interaction.client.settings.share_results:
            await send_ephemeral(interaction, f"Not yours: only <@{self.owner_id}> can use these prompts. "
                                              "Use /describe to get your own.")
            return False
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            message = interaction.message
            prompt = described_prompts(message.content if message is not None else "").get(self.number)
            if prompt is None:
                raise UserFacingError("That prompt is no longer on this message; run /describe again.")
            order = WorkOrder(GenerationKind.IMAGINE, {"prompt": prompt}, with_defaults=True)
            outcome = await interaction.client.intake.submit(interaction, order)
            if isinstance(outcome, Refused):
                await send_ephemeral(interaction, outcome.message)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:
            await report_unexpected(interaction, error, job_id=None, action="describe")


def describe_view(owner_id: int, count: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for number in range(1, count + 1):
        view.add_item(DescribeButton(owner_id, number))
    return view


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    RerollButton, VariationButton, VaryButton, PickButton, UpscaleTwiceButton,
    EditButton, InfoButton, DeleteButton, CancelButton,
    ZoomOutButton, CustomZoomButton, MakeSquareButton, PanButton, VaryRegionButton, DescribeButton,
)


def result_view(record: GenerationRecord) -> discord.ui.View:
    """U1–U4 and V1–V4 under a grid; under a single image Vary (Subtle/Strong/Region) and Upscale 2×, Zoom
    Out 2×/1.5×, Custom Zoom, Make Square (not square yet), Pan ⬅️➡️⬆️⬇️; then Reroll, Edit, Info, Delete.
    At most 4 rows of 4 buttons: within Discord's 5 × 5.

    Results made from an init image (edits, Upscale 2×, img2img) vary by an img2img pass from the image.
    """
    view = discord.ui.View(timeout=None)
    count = len(record.images)
    if count > 1:
        for index in range(count):
            view.add_item(PickButton(record.id, index, row=0))
        for index in range(count):
            view.add_item(VariationButton(record.id, index, row=1))
    elif count == 1:
        view.add_item(VaryButton(record.id, 0, "subtle", row=0))
        view.add_item(VaryButton(record.id, 0, "strong", row=0))
        view.add_item(VaryRegionButton(record.id, 0, row=0))
        view.add_item(UpscaleTwiceButton(record.id, 0, row=0))
        for tenths in ZOOM_BUTTONS:
            view.add_item(ZoomOutButton(record.id, 0, tenths, row=1))
        view.add_item(CustomZoomButton(record.id, 0, row=1))
        first = record.images[0]
        if first.width != first.height:
            view.add_item(MakeSquareButton(record.id, 0, row=1))
        for direction in PAN_ARROWS:
            view.add_item(PanButton(record.id, 0, direction, row=2))
    view.add_item(RerollButton(record.id, row=3))
    view.add_item(EditButton(record.id, row=3))
    view.add_item(InfoButton(record.id, row=3))
    view.add_item(DeleteButton(record.id, row=3))
    return view


def result_layout(record: GenerationRecord, result: presentation.ResultMessage, *, spoiler: bool = False,
                  ) -> discord.ui.LayoutView:
    """The gallery layout (Components V2): one container with the prompt and settings, the picture in a media
    gallery (alt text = the prompt; a spoiler where the content policy asks), the buttons and the footer."""
    text, footer = presentation.result_text(result.embed)
    container: discord.ui.Container[discord.ui.LayoutView] = discord.ui.Container(
        accent_colour=presentation.EMBED_COLOUR)
    if result.content:
        container.add_item(discord.ui.TextDisplay(result.content))
    container.add_item(discord.ui.TextDisplay(text))
    alt = presentation.display_prompt(record)[:1024]
    container.add_item(discord.ui.MediaGallery(
        discord.MediaGalleryItem(f"attachment://{result.image.filename}", description=alt, spoiler=spoiler)))
    rows: dict[int, list[discord.ui.Item[Any]]] = {}
    for item in result_view(record).children:
        rows.setdefault(item.row or 0, []).append(item)
    for items in rows.values():
        container.add_item(discord.ui.ActionRow(*items))
    container.add_item(discord.ui.TextDisplay(footer))
    view = discord.ui.LayoutView(timeout=None)
    view.add_item(container)
    return view


def status_view(generation_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(generation_id))
    return view
