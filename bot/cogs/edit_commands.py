"""/blend and /describe: images in, a mixed grid or four prompts out.

/blend records the job first (its 2–5 attachments are downloaded by the job, as /imagine's init image
is) and goes through the bot's one entry point like every other generation. /describe renders nothing:
it reads one attachment and answers with four prompts and buttons that /imagine them.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from bot.errors import report_unexpected, send_ephemeral
from bot.intake import Refused, WorkOrder, check_attachment
from bot.views import describe_text, describe_view
from generation import RequestError
from generation.describe import Captioner, check_describer, describe
from generation.editing import BLEND_STRENGTH
from generation.flags import MAX_ASPECT
from storage import GenerationKind

if TYPE_CHECKING:
    from bot.host import Host

Interaction = discord.Interaction["Host"]
BLEND_GRID = 4


class EditCommands(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot
        model = bot.settings.describe_model
        self.captioner = Captioner(model, device="cpu") if model else None

    @app_commands.command(name="blend", description="Mix 2–5 pictures into a grid of new ones")
    @app_commands.describe(image1="A picture to mix", image2="Another picture", image3="Optional",
                           image4="Optional", image5="Optional",
                           prompt="What the mix should show (optional; inline --flags work)",
                           strength="How far to move away from the mix (0.1–1, default 0.5)")
    async def blend(self, interaction: Interaction, image1: discord.Attachment, image2: discord.Attachment,
                    image3: discord.Attachment | None = None, image4: discord.Attachment | None = None,
                    image5: discord.Attachment | None = None, prompt: str | None = None,
                    strength: app_commands.Range[float, 0.1, 1.0] | None = None) -> None:
        more = tuple(image for image in (image2, image3, image4, image5) if image is not None)
        fields = {"prompt": prompt or "", "edit_mode": "blend",
                  "strength": BLEND_STRENGTH if strength is None else strength,
                  "count": min(BLEND_GRID, self.bot.queue.limits.max_count)}
        # The sources' own shape, not the member's default one: square pictures blend into a square.
        order = WorkOrder(GenerationKind.BLEND, fields, with_defaults=True, attachment=image1, more_attachments=more,
                          aspect_ratio=sources_aspect_ratio([image1, *more]))
        outcome = await self.bot.intake.submit(interaction, order)
        if isinstance(outcome, Refused):
            await send_ephemeral(interaction, outcome.message)

    @app_commands.command(name="describe", description="Four prompts that would draw this picture")
    @app_commands.describe(image="The picture to describe (PNG, JPEG or WebP)")
    async def describe(self, interaction: Interaction, image: discord.Attachment) -> None:
        model = self.bot.settings.default_model
        try:
            check_attachment(image, option="image")
            check_describer(model, self.captioner)  # the model entry declares a describer, or DESCRIBE_MODEL is set
        except RequestError as error:
            await send_ephemeral(interaction, str(error))
            return
        await interaction.response.defer(thinking=True)
        try:
            data = await image.read()
            prompts = await asyncio.to_thread(self._describe, data, model)
        except (RequestError, OSError, discord.HTTPException) as error:
            message = str(error) if isinstance(error, RequestError) else "The picture could not be read; attach a PNG, JPEG or WebP."
            # After a public defer the first followup IS the thinking message: turn that into a short public
            # line, so the second followup is a new message and can be private (as /imagine's init image).
            await interaction.edit_original_response(content="⚠️ /describe could not use that picture.")
            await send_ephemeral(interaction, f"⚠️ {message}")
            return
        except Exception as error:
            await report_unexpected(interaction, error, job_id=None, action="describe")
            return
        await interaction.edit_original_response(content=describe_text(prompts),
                                                 view=describe_view(interaction.user.id, len(prompts)))

    def _describe(self, data: bytes, model: str) -> list[str]:
        try:
            with Image.open(io.BytesIO(data)) as opened:
                picture = opened.convert("RGB")
        except Exception:
            raise RequestError("The picture could not be read; attach a PNG, JPEG or WebP.") from None
        return describe(picture, model, self.captioner)


def sources_aspect_ratio(sources: Sequence[discord.Attachment]) -> str:
    """"W:H" of the blend's sources: their mean shape as Discord reports it, within --ar's range; "1:1" where
    Discord gives no size (the sources are read only when the job runs)."""
    shapes = [source.width / source.height for source in sources if source.width and source.height]
    if not shapes:
        return "1:1"
    mean = min(max(sum(shapes) / len(shapes), 1 / MAX_ASPECT), MAX_ASPECT)
    ratio = Fraction(mean).limit_denominator(16)
    return f"{ratio.numerator}:{ratio.denominator}"


async def setup(bot: Host) -> None:
    await bot.add_cog(EditCommands(bot))
