"""Which buttons go under a result, a status line or a /describe answer, and every DynamicItem the bot registers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from bot import presentation

if TYPE_CHECKING:
    from storage import GenerationRecord

log = logging.getLogger(__name__)
from bot.views.conversation import ContinueButton, NotWhatIMeantButton, conversation_buttons
from bot.views.describe import DescribeButton
from bot.views.generation_buttons import (CancelButton, DeleteButton, EditButton, InfoButton, PickButton,
                                         RerollButton, UpscaleTwiceButton, VariationButton, VaryButton)
from bot.views.image_edits import (CustomZoomButton, MakeSquareButton, PanButton, VaryRegionButton, ZoomOutButton,
                                  PAN_ARROWS, ZOOM_BUTTONS)

DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    RerollButton, VariationButton, VaryButton, PickButton, UpscaleTwiceButton,
    EditButton, InfoButton, DeleteButton, CancelButton,
    ZoomOutButton, CustomZoomButton, MakeSquareButton, PanButton, VaryRegionButton, DescribeButton,
    ContinueButton, NotWhatIMeantButton,
)


def result_view(record: GenerationRecord) -> discord.ui.View:
    """U1–U4 and V1–V4 under a grid; under a single image Vary (Subtle/Strong/Region) and Upscale 2×, Zoom
    Out 2×/1.5×, Custom Zoom, Make Square (not square yet), Pan ⬅️➡️⬆️⬇️; then Reroll, Edit, Info, Delete;
    then 💬 Continue (in servers) and ↩️ Not what I meant (under a turn's result). At most 5 rows of 4
    buttons: within Discord's 5 × 5.

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
    for item in conversation_buttons(record, row=4):
        view.add_item(item)
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
