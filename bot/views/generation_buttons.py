"""The buttons on a generation: Reroll, U/V, Vary, Upscale 2×, Edit (and its form), Info, Delete, Cancel."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord

from bot import modlog, presentation
from bot.errors import send_ephemeral
from bot.instruction_edits import edits_by_instruction, instruction_edit_request
from bot.record_requests import reproduce_options, reproduce_prompt
from generation.queue.records import request_for_image, request_from_record
from generation import GenerationRequest, reroll_request, upscale_request, variation_request
from generation.variants import image_variation_request
from storage import GenerationKind, GenerationStatus

if TYPE_CHECKING:
    from storage import GenerationRecord, ImageRecord

log = logging.getLogger(__name__)
from bot.views.base import (
    CustomId, DIGIT, NUMBER,
    GenerationButton, GenerationModal, Interaction, button, image_index, source_request, submit_child
)

VARY_GRID = 4  # a Vary (Subtle/Strong) click makes a grid of this many

async def variation_of(interaction: Interaction, record: GenerationRecord, image: ImageRecord, *, strong: bool,
                       count: int) -> GenerationRequest:
    """Variations of one image: subseed noise for text-to-image, else an img2img pass from the image itself."""
    source = await source_request(interaction.client.store, record)
    if source.init_image is None and source.edit_mode is None:
        return variation_request(source, image.seed, strong=strong, count=count)
    png = await interaction.client.store.read_image(image)
    return image_variation_request(source, png, strong=strong, count=count)


REROLL_ID = CustomId("gen:reroll", generation_id=NUMBER)


class RerollButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                   template=REROLL_ID.template):
    open_to_everyone = True

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(button("Reroll", REROLL_ID.build(generation_id=generation_id), emoji="🔄", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        request = reroll_request(await source_request(interaction.client.store, self.record))
        await submit_child(interaction, self.record, GenerationKind.REROLL, request)


VARIATION_ID = CustomId("gen:var", generation_id=NUMBER, index=DIGIT)


class VariationButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                      template=VARIATION_ID.template):
    """V1–V4 under a grid: a grid of strong variations of that image."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(button(f"V{index + 1}", VARIATION_ID.build(generation_id=generation_id, index=index), row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        image = self.record.images[image_index(self.record, self.index)]
        request = await variation_of(interaction, self.record, image, strong=True, count=self.record.count or 1)
        await submit_child(interaction, self.record, GenerationKind.VARIATION, request)


VARY_ID = CustomId("gen:vary", generation_id=NUMBER, index=DIGIT, how=r"subtle|strong")


class VaryButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=VARY_ID.template):
    """Vary (Subtle) / Vary (Strong) under a single image."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, how: str, row: int | None = None) -> None:
        label = "Vary (Subtle)" if how == "subtle" else "Vary (Strong)"
        custom_id = VARY_ID.build(generation_id=generation_id, index=index, how=how)
        super().__init__(button(label, custom_id, emoji="🪄", row=row))
        self.generation_id = generation_id
        self.index = index
        self.how = how

    async def act(self, interaction: Interaction) -> None:
        image = self.record.images[image_index(self.record, self.index)]
        # A grid, as V1–V4 give (Midjourney's Vary does the same): up to 4 images, within the operator's limit.
        count = min(VARY_GRID, interaction.client.queue.limits.max_count)
        request = await variation_of(interaction, self.record, image, strong=self.how == "strong", count=count)
        await submit_child(interaction, self.record, GenerationKind.VARIATION, request)


PICK_ID = CustomId("gen:pick", "gen:up", generation_id=NUMBER, index=DIGIT)


class PickButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=PICK_ID.template):
    """U1–U4: that image of a grid on its own, as a generation of its own (so it gets its own buttons).

    It is a pick, not an upscale: the image is copied, not rendered again. (`gen:up:` ids are the
    buttons of results posted before this name.)
    """

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(button(f"U{index + 1}", PICK_ID.build(generation_id=generation_id, index=index), row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        record = self.record
        image = record.images[image_index(record, self.index)]
        source = await source_request(interaction.client.store, record)
        request = request_for_image(record, image, source.init_image,
                                    {"sref_image": source.sref_image, "oref_image": source.oref_image})
        await submit_child(interaction, record, GenerationKind.PICK, request, source_index=self.index)


UPSCALE_TWICE_ID = CustomId("gen:up2", generation_id=NUMBER, index=DIGIT)


class UpscaleTwiceButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                         template=UPSCALE_TWICE_ID.template):
    """Upscale 2×: re-render the image at twice the size, starting from the image itself."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        custom_id = UPSCALE_TWICE_ID.build(generation_id=generation_id, index=index)
        super().__init__(button("Upscale 2×", custom_id, emoji="🔍", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        record = self.record
        image = record.images[image_index(record, self.index)]
        png = await interaction.client.store.read_image(image)
        request = upscale_request(request_for_image(record, image), png, image.seed)
        await submit_child(interaction, record, GenerationKind.UPSCALE, request)


class EditModal(GenerationModal):
    """Change the prompt (and negative prompt) of a generation and render it again; with a model that edits by
    instruction, the words are the instruction on the result's picture (bot.instruction_edits)."""

    action = "edit"

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

    async def submitted(self, interaction: Interaction) -> None:
        queue, store = interaction.client.queue, interaction.client.store
        seed = self.record.seed if self.keep_seed.value else None
        if edits_by_instruction(queue, self.record.model or "") and self.record.images:
            # The words are the instruction on the picture shown (bot.instruction_edits).
            request = await instruction_edit_request(store, queue, self.record, self.prompt.value,
                                                     negative_prompt=self.negative_prompt.value or "", seed=seed)
            await submit_child(interaction, self.record, GenerationKind.EDIT, request)
            return
        source = await source_request(store, self.record)
        # The prompt box takes the same inline --flags as /imagine's prompt (the entry point parses them).
        request = source.replace(
            prompt=self.prompt.value.strip(), negative_prompt=(self.negative_prompt.value or "").strip(),
            seed=seed)
        await submit_child(interaction, self.record, GenerationKind.EDIT, request)


EDIT_ID = CustomId("gen:edit", generation_id=NUMBER)


class EditButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=EDIT_ID.template):
    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(button("Edit", EDIT_ID.build(generation_id=generation_id), emoji="✏️", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(EditModal(self.record))


INFO_ID = CustomId("gen:info", generation_id=NUMBER)


class InfoButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                 template=INFO_ID.template):
    open_to_everyone = True

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(button("Info", INFO_ID.build(generation_id=generation_id), emoji="ℹ️", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        request = request_from_record(self.record)
        options = reproduce_options(request, with_init_image=self.record.has_init_image)
        await interaction.response.send_message(
            embed=presentation.info_embed(self.record, request, reproduce_prompt(request), options), ephemeral=True)


DELETE_ID = CustomId("gen:del", generation_id=NUMBER)


class DeleteButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                   template=DELETE_ID.template):

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(button("Delete", DELETE_ID.build(generation_id=generation_id), emoji="🗑️",
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


CANCEL_ID = CustomId("gen:cancel", generation_id=NUMBER)


class CancelButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                   template=CANCEL_ID.template):

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(button("Cancel", CANCEL_ID.build(generation_id=generation_id), emoji="✖", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        if self.record.status not in (GenerationStatus.QUEUED, GenerationStatus.RUNNING):
            await send_ephemeral(interaction, f"Job #{self.record.id} is already {self.record.status.value}.")
            return
        if interaction.client.queue.cancel(str(self.record.id)):
            await send_ephemeral(interaction, f"Cancelled job #{self.record.id}.")
        else:
            await send_ephemeral(interaction, f"Job #{self.record.id} has already finished rendering.")
