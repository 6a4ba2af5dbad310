"""/imagine: turn a prompt (with optional inline --flags) into a queued generation.

The handler validates what it can without I/O, defers at once (nothing slow comes before the defer),
and hands the job to the runner; the thinking message becomes the job's status line.
"""

# No `from __future__ import annotations` here: the command is built at runtime with option ranges
# and choices taken from Settings, and discord.py reads those from real annotation objects.

import asyncio
import io
import logging
from pathlib import PurePosixPath
from typing import Any, Optional

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from bot.cogs.preferences import PREFERENCES, server_defaults
from bot.errors import UserFacingError, report_unexpected, send_ephemeral
from bot.settings import Settings
from generation import SAMPLERS, GenerationRequest, RequestError, parse_prompt_flags
from generation.flags import size_for_aspect_ratio
from storage import GenerationKind

log = logging.getLogger(__name__)

ASPECT_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16")
INIT_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# What the file name says when Discord sends no content type.
INIT_IMAGE_EXTENSIONS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
INIT_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_INIT_IMAGE_BYTES = 10 * 1024 * 1024
# Decoding is checked in full before queueing; this bounds the memory that takes (a phone photo fits).
MAX_INIT_IMAGE_PIXELS = 4096 * 4096
MAX_PROMPT_CHARS = 1000
# Discord accepts at most 25 choices per option.
MAX_CHOICES = 25

# Option name -> GenerationRequest field: the options /settings can default, and the per-request ones.
OPTION_FIELDS = {
    **{preference.option: preference.field for preference in PREFERENCES},
    "seed": "seed",
    "strength": "strength",
    "model": "model",
}


def build_imagine_command(cog: "Imagine", settings: Settings) -> app_commands.Command:
    """The /imagine command, with ranges and model choices from this bot's Settings."""
    models = settings.model_names[:MAX_CHOICES]
    size_lo, size_hi = settings.min_size, settings.max_size

    @app_commands.command(name="imagine", description="Create images from a text prompt")
    @app_commands.describe(
        prompt="What to draw; inline flags work too, e.g. --ar 16:9 --seed 42 --no blur",
        negative_prompt="What to keep out of the image",
        aspect_ratio="Shape of the image (ignored when width and height are given)",
        width="Width in pixels (a multiple of 8)",
        height="Height in pixels (a multiple of 8)",
        steps="Denoising steps: more is slower and finer",
        guidance="How closely to follow the prompt (CFG scale)",
        seed="Same seed + same settings = same image",
        sampler="The sampler (scheduler) to denoise with",
        count="How many images (4 makes a 2×2 grid)",
        init_image="Start from this picture (PNG, JPEG or WebP)",
        strength="How far to move away from the init image (0 keeps it, 1 ignores it)",
        model="Which model renders it",
    )
    @app_commands.choices(
        aspect_ratio=[app_commands.Choice(name=ratio, value=ratio) for ratio in ASPECT_RATIOS],
        sampler=[app_commands.Choice(name=name, value=name) for name in SAMPLERS[:MAX_CHOICES]],
        model=[app_commands.Choice(name=name, value=name) for name in models],
    )
    async def imagine(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        negative_prompt: Optional[app_commands.Range[str, 1, MAX_PROMPT_CHARS]] = None,
        aspect_ratio: Optional[str] = None,
        width: Optional[app_commands.Range[int, size_lo, size_hi]] = None,
        height: Optional[app_commands.Range[int, size_lo, size_hi]] = None,
        steps: Optional[app_commands.Range[int, 1, settings.max_steps]] = None,
        guidance: Optional[app_commands.Range[float, 0.0, 30.0]] = None,
        seed: Optional[app_commands.Range[int, 0, 2**32 - 1]] = None,
        sampler: Optional[str] = None,
        count: Optional[app_commands.Range[int, 1, settings.max_count]] = None,
        init_image: Optional[discord.Attachment] = None,
        strength: Optional[app_commands.Range[float, 0.0, 1.0]] = None,
        model: Optional[str] = None,
    ) -> None:
        options = {
            "negative_prompt": negative_prompt, "width": width, "height": height, "steps": steps,
            "guidance": guidance, "seed": seed, "sampler": sampler, "count": count, "strength": strength,
            "model": model,
        }
        await cog.imagine(interaction, prompt, options, aspect_ratio, init_image)

    return imagine


class Imagine(commands.Cog):
    """The /imagine command."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.command = build_imagine_command(self, bot.settings)  # type: ignore[attr-defined]
        self._native_sizes: dict[str, int] = {}

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)

    # ------------------------------------------------------------------ request assembly

    def explicit_fields(self, prompt: str, options: dict[str, Any], aspect_ratio: Optional[str]) -> dict[str, Any]:
        """The request fields the user set: options, then inline --flags (the more specific intent) over them."""
        settings: Settings = self.bot.settings  # type: ignore[attr-defined]
        fields = {OPTION_FIELDS[name]: value for name, value in options.items() if value is not None}
        native = self.native_size(fields.get("model", settings.model))
        if aspect_ratio is not None and not ("width" in fields and "height" in fields):
            ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
            base = fields.get("width") or fields.get("height") or settings.default_width or native
            fields["width"], fields["height"] = size_for_aspect_ratio(ratio_w, ratio_h, base)
        try:
            text, flags = parse_prompt_flags(prompt, base_size=settings.default_width or native)
        except RequestError as error:
            raise UserFacingError(str(error)) from None
        fields.update(flags)
        fields["prompt"] = text
        return fields

    def build_request(self, fields: dict[str, Any], preferences: dict[str, Any],
                      init_image: Optional[bytes] = None) -> GenerationRequest:
        """Explicit fields over the member's /settings over the server defaults."""
        settings: Settings = self.bot.settings  # type: ignore[attr-defined]
        values = {**server_defaults(settings), "model": settings.model}
        values.update({key: value for key, value in preferences.items() if value is not None})
        values.update(fields)
        if init_image is not None:
            values["init_image"] = init_image
        return GenerationRequest(**values)

    def native_size(self, model: str) -> int:
        """The model's native side in pixels (what --ar and aspect_ratio scale from)."""
        if model not in self._native_sizes:
            try:
                self._native_sizes[model] = self.bot.service.native_size(model)  # type: ignore[attr-defined]
            except RequestError as error:
                raise UserFacingError(str(error)) from None
        return self._native_sizes[model]

    @staticmethod
    def check_attachment(attachment: discord.Attachment) -> None:
        """What can be told without downloading: the declared type and the size."""
        content_type = (attachment.content_type or "").split(";")[0].strip().lower()
        if not content_type:
            content_type = INIT_IMAGE_EXTENSIONS.get(PurePosixPath(attachment.filename).suffix.lower(), "")
        if content_type not in INIT_IMAGE_TYPES:
            raise UserFacingError(
                f"init_image must be a PNG, JPEG or WebP picture; {attachment.filename!r} is "
                f"{content_type or 'of an unknown type'}.")
        if attachment.size > MAX_INIT_IMAGE_BYTES:
            raise UserFacingError(
                f"init_image is {attachment.size / 1048576:.1f} MiB; the limit is {MAX_INIT_IMAGE_BYTES // 1048576} MiB.")

    # ------------------------------------------------------------------ the command

    async def imagine(self, interaction: discord.Interaction, prompt: str, options: dict[str, Any],
                      aspect_ratio: Optional[str], attachment: Optional[discord.Attachment]) -> None:
        runner = self.bot.runner  # type: ignore[attr-defined]
        # Before the defer: only checks that need no I/O, so errors can still be ephemeral.
        try:
            fields = self.explicit_fields(prompt, options, aspect_ratio)
            if attachment is not None:
                self.check_attachment(attachment)
            elif "strength" in fields:
                raise UserFacingError("strength only applies with an init_image; attach one or leave strength out.")
            runner.validate(self.build_request(fields, {}))
        except UserFacingError as error:
            await send_ephemeral(interaction, str(error))
            return
        await interaction.response.defer(thinking=True)
        try:
            preferences = await self.bot.store.user_settings(interaction.user.id)  # type: ignore[attr-defined]
            try:
                init_image = await read_init_image(attachment) if attachment is not None else None
            except UserFacingError as error:
                # After a public defer no reply can be private, so the status message says what is wrong
                # (and that nothing was recorded or queued).
                await interaction.edit_original_response(content=f"⚠️ {error} Nothing was queued.")
                return
            request = self.build_request(fields, preferences, init_image)
            await runner.start_generation(interaction, request, GenerationKind.IMAGINE)
        except UserFacingError:
            pass  # the runner has shown it on the status message
        except Exception as error:
            await report_unexpected(interaction, error, action="/imagine")


async def read_init_image(attachment: discord.Attachment) -> bytes:
    """The attachment's bytes, once they have decoded as a picture (UserFacingError if not)."""
    try:
        data = await attachment.read()
    except discord.HTTPException as error:
        raise UserFacingError(
            f"init_image could not be downloaded from Discord (HTTP {error.status}); attach it again.") from None
    await asyncio.to_thread(check_init_image, data)
    return data


def check_init_image(data: bytes) -> None:
    """Decode the whole picture (blocking: run it in a thread), so a damaged file never reaches the queue."""
    try:
        with Image.open(io.BytesIO(data), formats=INIT_IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_INIT_IMAGE_PIXELS:
                raise UserFacingError(
                    f"init_image is {width}×{height} = {width * height} pixels; the limit is "
                    f"{MAX_INIT_IMAGE_PIXELS} pixels (for example 4096×4096).")
            image.load()
    except UserFacingError:
        raise
    except Exception:  # PIL reports damage as OSError, SyntaxError, ValueError, DecompressionBombError…
        raise UserFacingError(
            "init_image is not a readable picture: the file is damaged or is not really a PNG, JPEG or WebP. "
            "Attach another one.") from None


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Imagine(bot))
