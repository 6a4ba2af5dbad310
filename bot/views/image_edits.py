"""Edits of one image: Zoom Out, Custom Zoom, Make Square, Pan, Vary (Region), and their forms."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.errors import UserFacingError
from generation.queue.records import request_for_image
from generation.editing import CELL_NAMES, ZOOM_RANGE, edit_request
from storage import GenerationKind

if TYPE_CHECKING:
    from storage import GenerationRecord

log = logging.getLogger(__name__)
from bot.views.base import CustomId, DIGIT, NUMBER, GenerationButton, GenerationModal, Interaction, button, image_index, submit_child

# ----------------------------------------------------------------------------- edits of one image

ZOOM_BUTTONS = (20, 15)  # Zoom Out 2× and 1.5× (tenths, for the custom id)
PAN_ARROWS = {"left": "⬅️", "right": "➡️", "up": "⬆️", "down": "⬇️"}
EDIT_KINDS = {"zoom": GenerationKind.ZOOM, "square": GenerationKind.SQUARE, "pan": GenerationKind.PAN,
              "region": GenerationKind.REGION}


async def submit_edit(interaction: Interaction, record: GenerationRecord, index: int, mode: str, *,
                      factor: float | None = None, direction: str | None = None, region: str | None = None,
                      prompt: str | None = None) -> None:
    """Zoom, square, pan or region: a child generation that inpaints part of a larger (or the same) canvas."""
    image = record.images[image_index(record, index)]
    png = await interaction.client.store.read_image(image)
    source = request_for_image(record, image)
    queue = interaction.client.queue
    request = edit_request(source, png, image.seed, mode, queue.picture_limits(source.model), factor=factor, direction=direction,
                           region=region, prompt=prompt, multiple=queue.size_multiple(source.model))
    await submit_child(interaction, record, EDIT_KINDS[mode], request)


ZOOM_OUT_ID = CustomId("gen:zoom", generation_id=NUMBER, index=DIGIT, tenths=NUMBER)


class ZoomOutButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                    template=ZOOM_OUT_ID.template):
    """Zoom Out 2× / 1.5×: a larger canvas around the image, its new border inpainted (same prompt and seed)."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, tenths: int, row: int | None = None) -> None:
        custom_id = ZOOM_OUT_ID.build(generation_id=generation_id, index=index, tenths=tenths)
        super().__init__(button(f"Zoom Out {tenths / 10:g}×", custom_id,
                                 emoji="🔎", row=row))
        self.generation_id = generation_id
        self.index = index
        self.tenths = tenths

    async def act(self, interaction: Interaction) -> None:
        await submit_edit(interaction, self.record, self.index, "zoom", factor=self.tenths / 10)


class CustomZoomModal(GenerationModal):
    """Custom Zoom: a factor from 1.0 to 2.0 and the prompt for the whole new picture."""

    action = "custom zoom"

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

    async def submitted(self, interaction: Interaction) -> None:
        try:
            factor = float(self.factor.value.strip().rstrip("×x"))
        except ValueError:
            raise UserFacingError(f"The zoom factor must be a number from {ZOOM_RANGE[0]:g} to "
                                  f"{ZOOM_RANGE[1]:g}, got {self.factor.value!r}.") from None
        await submit_edit(interaction, self.record, self.index, "zoom", factor=factor, prompt=self.prompt.value)


CUSTOM_ZOOM_ID = CustomId("gen:czoom", generation_id=NUMBER, index=DIGIT)


class CustomZoomButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                       template=CUSTOM_ZOOM_ID.template):
    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        custom_id = CUSTOM_ZOOM_ID.build(generation_id=generation_id, index=index)
        super().__init__(button("Custom Zoom", custom_id, emoji="🔎", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(CustomZoomModal(self.record, self.index))


MAKE_SQUARE_ID = CustomId("gen:square", generation_id=NUMBER, index=DIGIT)


class MakeSquareButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                       template=MAKE_SQUARE_ID.template):
    """Make Square: extend the shorter side to the longer one, inpainting the new bands."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        custom_id = MAKE_SQUARE_ID.build(generation_id=generation_id, index=index)
        super().__init__(button("Make Square", custom_id, emoji="🔲", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await submit_edit(interaction, self.record, self.index, "square")


PAN_ID = CustomId("gen:pan", generation_id=NUMBER, index=DIGIT, direction=r"left|right|up|down")


class PanButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                template=PAN_ID.template):
    """Pan: extend one side by half the image and inpaint the new strip."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, direction: str, row: int | None = None) -> None:
        custom_id = PAN_ID.build(generation_id=generation_id, index=index, direction=direction)
        button = discord.ui.Button["discord.ui.View"](
            custom_id=custom_id, emoji=PAN_ARROWS[direction],
            style=discord.ButtonStyle.secondary, row=row)
        super().__init__(button)
        self.generation_id = generation_id
        self.index = index
        self.direction = direction

    async def act(self, interaction: Interaction) -> None:
        await submit_edit(interaction, self.record, self.index, "pan", direction=self.direction)


class VaryRegionModal(GenerationModal):
    """Vary (Region): cells of a 3×3 grid over the image, and an optional new prompt for them."""

    action = "vary region"

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

    async def submitted(self, interaction: Interaction) -> None:
        await submit_edit(interaction, self.record, self.index, "region", region="+".join(self.cells.values),
                          prompt=self.prompt.value or None)


VARY_REGION_ID = CustomId("gen:region", generation_id=NUMBER, index=DIGIT)


class VaryRegionButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                       template=VARY_REGION_ID.template):
    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        custom_id = VARY_REGION_ID.build(generation_id=generation_id, index=index)
        super().__init__(button("Vary (Region)", custom_id, emoji="🖌️", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(VaryRegionModal(self.record, self.index))


# ----------------------------------------------------------------------------- /describe
