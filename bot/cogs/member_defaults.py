"""/settings: a member's own defaults for the /imagine options they leave out.

"Settings" is the command's name (what members look for); in code these are member defaults, as
opposed to the operator's Settings. Which parameters a member may default, and the options of the
command, come from the request's parameter table. Values are validated by the generation service with
exactly the rules /imagine uses, so no limit is repeated here.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, cast

import discord
from discord.ext import commands

from bot.cogs.imagine import ASPECT_RATIOS, build_command, model_choices
from bot.intake import server_defaults
from generation import PARAMETERS, SAMPLERS, GenerationRequest, RequestError, size_for_aspect_ratio

if TYPE_CHECKING:
    from bot.host import Host

log = logging.getLogger(__name__)

# The probe prompt only exists to make the request complete; prompts are never a stored default.
VALIDATION_PROMPT = "settings check"
DEFAULTABLE = tuple(parameter for parameter in PARAMETERS if parameter.member_default)
DEFAULT_FIELDS = tuple(parameter.field for parameter in DEFAULTABLE)
Interaction = discord.Interaction["Host"]


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

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        reset = inspect.Parameter("reset", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=False)
        self.command = build_command(
            "settings", "Show or change your defaults for /imagine", DEFAULTABLE, bot.queue.limits,
            model_choices(bot), self.settings_command, extra=(reset,),
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
        defaults = server_defaults(self.bot.services)
        config = await self.bot.intake.guild_config(interaction.guild_id)
        if config is not None:  # this server's /config defaults sit between the bot's and the member's
            defaults.update({key: value for key, value in config.defaults.items() if key in defaults})

        if not changes and not reset:
            mine = await store.member_defaults(user_id)
            await interaction.response.send_message(
                embed=settings_embed(mine, defaults, title="Your /imagine defaults"), ephemeral=True,
                view=DefaultsView(self, mine))
            return
        problem, saved = await self.change(user_id, changes, reset=reset)
        if problem is not None:
            await interaction.response.send_message(f"{problem} Nothing was saved.", ephemeral=True)
            return
        if reset and not changes:
            title = "Your defaults were cleared; /imagine uses the server defaults"
        else:
            title = "Saved. Your /imagine defaults"
        await interaction.response.send_message(embed=settings_embed(saved, defaults, title=title), ephemeral=True,
                                                view=DefaultsView(self, saved))

    async def change(self, user_id: int, changes: dict[str, Any], *, reset: bool = False,
                     ) -> tuple[str | None, dict[str, Any]]:
        """Validate and save; (the problem, current defaults) — nothing is saved when there is a problem.

        A value of None in `changes` clears that default; `reset` clears all of them first.
        """
        current = {} if reset else await self.bot.store.member_defaults(user_id)
        merged = {k: v for k, v in {**current, **changes}.items() if k in DEFAULT_FIELDS and v is not None}
        problem = self.validate(merged, server_defaults(self.bot.services))
        if problem is not None:
            return problem, current
        # None clears a stored default; one call, so a reset with new values is a single update.
        cleared = dict.fromkeys(DEFAULT_FIELDS) if reset else {}
        return None, await self.bot.store.set_member_defaults(user_id, {**cleared, **changes})

    def validate(self, values: dict[str, Any], defaults: dict[str, Any]) -> str | None:
        """The generation service's complaint about these defaults, or None if /imagine would accept them."""
        # Built like /imagine builds its request: server defaults (with the bot's model) under the values.
        probe = {**{k: v for k, v in defaults.items() if v is not None}, **values}
        try:
            self.bot.queue.prepare(GenerationRequest(prompt=VALIDATION_PROMPT, **probe))
        except RequestError as error:
            return str(error)
        return None


# The ephemeral panel lives while Discord lets its token edit the message.
PANEL_TIMEOUT_S = 600.0


class DefaultsView(discord.ui.View):
    """Buttons and selects under /settings: pick a sampler or a shape, clear one default, reset all."""

    def __init__(self, cog: MemberDefaults, mine: dict[str, Any]) -> None:
        super().__init__(timeout=PANEL_TIMEOUT_S)
        self.cog = cog
        labels = {parameter.field: parameter.label for parameter in DEFAULTABLE}
        set_fields = [field for field in DEFAULT_FIELDS if mine.get(field) is not None]
        if set_fields:
            clear = cast("discord.ui.Select[DefaultsView]", self.clear_one)  # the decorator made it a Select
            clear.options = [discord.SelectOption(label=labels[field], value=field) for field in set_fields]
        else:  # nothing to clear: no controls that could only do nothing
            self.remove_item(self.clear_one)
            self.remove_item(self.reset_all)

    @discord.ui.select(placeholder="Default sampler…", row=0,
                       options=[discord.SelectOption(label=name) for name in SAMPLERS[:25]])
    async def pick_sampler(self, interaction: Interaction, select: discord.ui.Select[DefaultsView]) -> None:
        await self.apply(interaction, {"sampler": select.values[0]})

    @discord.ui.select(placeholder="Default shape…", row=1,
                       options=[discord.SelectOption(label=ratio) for ratio in ASPECT_RATIOS])
    async def pick_shape(self, interaction: Interaction, select: discord.ui.Select[DefaultsView]) -> None:
        ratio_w, ratio_h = (int(part) for part in select.values[0].split(":"))
        bot = self.cog.bot
        base = bot.settings.default_width or bot.queue.native_size(bot.settings.default_model)
        width, height = size_for_aspect_ratio(ratio_w, ratio_h, base)
        await self.apply(interaction, {"width": width, "height": height})

    @discord.ui.select(placeholder="Clear one default…", row=2, options=[discord.SelectOption(label="-")])
    async def clear_one(self, interaction: Interaction, select: discord.ui.Select[DefaultsView]) -> None:
        await self.apply(interaction, {select.values[0]: None})

    @discord.ui.button(label="Reset all", style=discord.ButtonStyle.danger, row=3)
    async def reset_all(self, interaction: Interaction, button: discord.ui.Button[DefaultsView]) -> None:
        await self.apply(interaction, {}, reset=True)

    async def apply(self, interaction: Interaction, changes: dict[str, Any], *, reset: bool = False) -> None:
        problem, saved = await self.cog.change(interaction.user.id, changes, reset=reset)
        title = f"{problem} Nothing was saved." if problem else "Saved. Your /imagine defaults"
        await interaction.response.edit_message(
            embed=settings_embed(saved, server_defaults(self.cog.bot.services), title=title[:256]),
            view=DefaultsView(self.cog, saved))


async def setup(bot: Host) -> None:
    await bot.add_cog(MemberDefaults(bot))
