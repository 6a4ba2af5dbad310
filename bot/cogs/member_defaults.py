"""/settings: a member's own defaults for the /imagine options they leave out.

"Settings" is the command's name (what members look for); in code these are member defaults, as
opposed to the operator's Settings. Which parameters a member may default, and the options of the
command, come from the request's parameter table. Values are validated by the generation service with
exactly the rules /imagine uses, so no limit is repeated here.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.cogs.imagine import build_command
from bot.intake import server_defaults
from generation import PARAMETERS, GenerationRequest, RequestError

if TYPE_CHECKING:
    from bot.app import ImagineBot

log = logging.getLogger(__name__)

# The probe prompt only exists to make the request complete; prompts are never a stored default.
VALIDATION_PROMPT = "settings check"
DEFAULTABLE = tuple(parameter for parameter in PARAMETERS if parameter.member_default)
DEFAULT_FIELDS = tuple(parameter.field for parameter in DEFAULTABLE)
Interaction = discord.Interaction["ImagineBot"]


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
    for parameter in DEFAULTABLE:
        field = parameter.field
        if mine.get(field) is not None:
            value = f"**{format_value(field, mine[field])}** (server default: {format_value(field, defaults[field])})"
        else:
            value = f"{format_value(field, defaults[field])} (server default)"
        lines.append(f"{parameter.label} (`{parameter.option}`): {value}")
    embed = discord.Embed(title=title, description="\n".join(lines), colour=discord.Colour.blurple())
    embed.set_footer(
        text="Options you give /imagine always win. Change these with /settings steps:30 …; reset:True clears them."
    )
    return embed


class MemberDefaults(commands.Cog):
    """/settings: per-member defaults for /imagine."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        reset = inspect.Parameter("reset", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=False)
        self.command = build_command(
            "settings", "Show or change your defaults for /imagine", DEFAULTABLE, bot.service.limits,
            bot.settings.model_names, self.settings_command, extra=(reset,),
            extra_descriptions={"reset": "Clear all your defaults (options given together with reset are then saved)"})

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)

    async def settings_command(self, interaction: Interaction, *, reset: bool = False, **options: Any) -> None:
        by_option = {parameter.option: parameter.field for parameter in DEFAULTABLE}
        changes = {by_option[option]: value for option, value in options.items() if value is not None}
        store = self.bot.store
        user_id = interaction.user.id
        defaults = server_defaults(self.bot)

        if not changes and not reset:
            mine = await store.member_defaults(user_id)
            await interaction.response.send_message(
                embed=settings_embed(mine, defaults, title="Your /imagine defaults"), ephemeral=True
            )
            return

        current = {} if reset else await store.member_defaults(user_id)
        merged = {**{k: v for k, v in current.items() if k in DEFAULT_FIELDS}, **changes}
        problem = self.validate(merged, defaults)
        if problem is not None:
            await interaction.response.send_message(f"{problem} Nothing was saved.", ephemeral=True)
            return

        # None clears a stored default; one call, so a reset with new values is a single update.
        cleared = dict.fromkeys(DEFAULT_FIELDS) if reset else {}
        saved = await store.set_member_defaults(user_id, {**cleared, **changes})
        if reset and not changes:
            title = "Your defaults were cleared; /imagine uses the server defaults"
        else:
            title = "Saved. Your /imagine defaults"
        await interaction.response.send_message(embed=settings_embed(saved, defaults, title=title), ephemeral=True)

    def validate(self, values: dict[str, Any], defaults: dict[str, Any]) -> str | None:
        """The generation service's complaint about these defaults, or None if /imagine would accept them."""
        # Built like /imagine builds its request: server defaults (with the bot's model) under the values.
        probe = {**{k: v for k, v in defaults.items() if v is not None}, **values}
        try:
            self.bot.service.prepare(GenerationRequest(prompt=VALIDATION_PROMPT, **probe))
        except RequestError as error:
            return str(error)
        return None


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(MemberDefaults(bot))
