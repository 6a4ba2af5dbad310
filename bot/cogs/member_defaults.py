"""/settings: a member's own defaults for the /imagine options they leave out.

Values are validated by the generation service with exactly the rules /imagine uses (a
GenerationRequest built from them goes through service.prepare), so no limit is repeated here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from generation import SAMPLERS, GenerationRequest, RequestError

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage import Store

log = logging.getLogger(__name__)

# The probe prompt only exists to make the request complete; prompts are never a stored default.
VALIDATION_PROMPT = "settings check"


@dataclass(frozen=True)
class Preference:
    option: str  # the /settings option name
    field: str  # the GenerationRequest field (= the stored key, = the storage column)
    label: str


PREFERENCES: tuple[Preference, ...] = (
    Preference("negative_prompt", "negative_prompt", "Negative prompt"),
    Preference("width", "width", "Width"),
    Preference("height", "height", "Height"),
    Preference("steps", "num_inference_steps", "Steps"),
    Preference("guidance", "guidance_scale", "Guidance"),
    Preference("sampler", "sampler", "Sampler"),
    Preference("count", "count", "Images per prompt"),
)
PREFERENCE_FIELDS = tuple(p.field for p in PREFERENCES)


def server_defaults(settings: Settings) -> dict[str, Any]:
    """What /imagine uses when neither the command nor the member's /settings give a value."""
    return {
        "negative_prompt": "",
        "width": settings.default_width,
        "height": settings.default_height,
        "num_inference_steps": settings.default_steps,
        "guidance_scale": settings.default_guidance,
        "sampler": settings.default_sampler,
        "count": 1,
    }


def format_value(field: str, value: Any) -> str:
    if value is None:
        return "model's native size" if field in ("width", "height") else "—"
    if field == "negative_prompt":
        return f"“{discord.utils.escape_markdown(value)}”" if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_embed(mine: dict[str, Any], defaults: dict[str, Any], *, title: str) -> discord.Embed:
    lines = []
    for pref in PREFERENCES:
        if mine.get(pref.field) is not None:
            value = f"**{format_value(pref.field, mine[pref.field])}** (server default: "
            value += f"{format_value(pref.field, defaults[pref.field])})"
        else:
            value = f"{format_value(pref.field, defaults[pref.field])} (server default)"
        lines.append(f"{pref.label} (`{pref.option}`): {value}")
    embed = discord.Embed(title=title, description="\n".join(lines), colour=discord.Colour.blurple())
    embed.set_footer(
        text="Options you give /imagine always win. Change these with /settings steps:30 …; reset:True clears them."
    )
    return embed


class Preferences(commands.Cog):
    """Per-member defaults for /imagine."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @property
    def store(self) -> Store:
        return self.bot.store  # type: ignore[attr-defined]

    @property
    def settings(self) -> Settings:
        return self.bot.settings  # type: ignore[attr-defined]

    @app_commands.command(name="settings", description="Show or change your defaults for /imagine")
    @app_commands.describe(
        negative_prompt="What to keep out of your images by default",
        width="Default image width in pixels",
        height="Default image height in pixels",
        steps="Default number of denoising steps",
        guidance="Default guidance scale (how closely to follow the prompt)",
        sampler="Default sampler",
        count="Default number of images per prompt",
        reset="Clear all your defaults (options given together with reset are then saved)",
    )
    # Discord shows at most 25 choices; the samplers are the same list /imagine offers.
    @app_commands.choices(sampler=[app_commands.Choice(name=name, value=name) for name in SAMPLERS[:25]])
    async def settings_command(
        self,
        interaction: discord.Interaction,
        negative_prompt: app_commands.Range[str, 1, 500] | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
        count: int | None = None,
        reset: bool = False,
    ) -> None:
        given = {"negative_prompt": negative_prompt, "width": width, "height": height, "steps": steps,
                 "guidance": guidance, "sampler": sampler, "count": count}
        changes = {pref.field: given[pref.option] for pref in PREFERENCES if given[pref.option] is not None}
        user_id = interaction.user.id
        defaults = server_defaults(self.settings)

        if not changes and not reset:
            mine = await self.store.user_settings(user_id)
            await interaction.response.send_message(
                embed=settings_embed(mine, defaults, title="Your /imagine defaults"), ephemeral=True
            )
            return

        current = {} if reset else await self.store.user_settings(user_id)
        merged = {**{k: v for k, v in current.items() if k in PREFERENCE_FIELDS}, **changes}
        problem = self.validate(merged, defaults)
        if problem is not None:
            await interaction.response.send_message(f"{problem} Nothing was saved.", ephemeral=True)
            return

        # None clears a stored default; one call, so a reset with new values is a single update.
        cleared = dict.fromkeys(PREFERENCE_FIELDS) if reset else {}
        saved = await self.store.set_user_settings(user_id, **{**cleared, **changes})
        if reset and not changes:
            title = "Your defaults were cleared; /imagine uses the server defaults"
        else:
            title = "Saved. Your /imagine defaults"
        await interaction.response.send_message(embed=settings_embed(saved, defaults, title=title), ephemeral=True)

    def validate(self, values: dict[str, Any], defaults: dict[str, Any]) -> str | None:
        """The generation service's complaint about these defaults, or None if /imagine would accept them."""
        # Built like /imagine builds its request: server defaults and the bot's model under the values.
        probe = {**{k: v for k, v in defaults.items() if v is not None}, "model": self.settings.model, **values}
        try:
            self.bot.service.prepare(GenerationRequest(prompt=VALIDATION_PROMPT, **probe))  # type: ignore[attr-defined]
        except RequestError as error:
            return str(error)
        return None


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Preferences(bot))
