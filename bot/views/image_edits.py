"""Edits of one image: Zoom Out, Custom Zoom, Make Square, Pan, Vary (Region), and their forms."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.errors import UserFacingError, report_unexpected, send_ephemeral
from generation.queue.records import request_for_image
from generation import RequestError
from generation.editing import CELL_NAMES, ZOOM_RANGE, edit_request
from storage import GenerationKind

if TYPE_CHECKING:
    from storage import GenerationRecord

log = logging.getLogger(__name__)
from bot.views.base import GenerationButton, Interaction, button, image_index, submit_child

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
    request = edit_request(source, png, image.seed, mode, queue.limits, factor=factor, direction=direction,
                           region=region, prompt=prompt, multiple=queue.size_multiple(source.model))
    await submit_child(interaction, record, EDIT_KINDS[mode], request)


class ZoomOutButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                    template=r"gen:zoom:(?P<generation_id>[0-9]+):(?P<index>[0-9]):(?P<tenths>[0-9]+)"):
    """Zoom Out 2× / 1.5×: a larger canvas around the image, its new border inpainted (same prompt and seed)."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, tenths: int, row: int | None = None) -> None:
        super().__init__(button(f"Zoom Out {tenths / 10:g}×", f"gen:zoom:{generation_id}:{index}:{tenths}",
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
        super().__init__(button("Custom Zoom", f"gen:czoom:{generation_id}:{index}", emoji="🔎", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(CustomZoomModal(self.record, self.index))


class MakeSquareButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                       template=r"gen:square:(?P<generation_id>[0-9]+):(?P<index>[0-9])"):
    """Make Square: extend the shorter side to the longer one, inpainting the new bands."""

    open_to_everyone = True

    def __init__(self, generation_id: int, index: int, row: int | None = None) -> None:
        super().__init__(button("Make Square", f"gen:square:{generation_id}:{index}", emoji="🔲", row=row))
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
        super().__init__(button("Vary (Region)", f"gen:region:{generation_id}:{index}", emoji="🖌️", row=row))
        self.generation_id = generation_id
        self.index = index

    async def act(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(VaryRegionModal(self.record, self.index))


# ----------------------------------------------------------------------------- /describe
