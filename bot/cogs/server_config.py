"""/config: a server's own rules, for members with Manage Server (every reply is private).

Stored per server (`Store.update_guild_config`) and applied by `Intake.draft` (channels, defaults,
models, banned words, queue cap, daily quota) and the runner (NSFW policy, mod log). Precedence:
the operator's limits > the server's rules > a member's /settings > what they type. Server defaults
sit between the operator's defaults and the member's, and are validated by the generation service with
exactly the rules /imagine uses (as /settings does), so they always lie inside the operator's limits.

Discord hides the command from members without Manage Server (`default_permissions`), but a server
can override that in its Integrations settings, so the permission is checked here too.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import modlog, policy
from bot.cogs.imagine import build_command, model_choices
from bot.cogs.member_defaults import VALIDATION_PROMPT, format_value
from bot.intake import server_defaults
from generation import PARAMETERS, GenerationRequest, RequestError
from storage import GuildConfigRecord

if TYPE_CHECKING:
    from bot.host import Host

log = logging.getLogger(__name__)
Interaction = discord.Interaction["Host"]

SERVER_DEFAULTABLE = tuple(parameter for parameter in PARAMETERS if parameter.field in policy.SERVER_DEFAULT_FIELDS)
MAX_QUOTA = 100_000
MAX_ALLOWED_CHANNELS = 50


def config_embed(config: GuildConfigRecord, operator: dict[str, Any], default_policy: str, *,
                 title: str) -> discord.Embed:
    channels = ", ".join(f"<#{channel_id}>" for channel_id in config.allowed_channel_ids) or "every channel"
    defaults = "\n".join(
        f"{parameter.label} (`{parameter.option}`): **{format_value(parameter.field, config.defaults[parameter.field])}**"
        for parameter in SERVER_DEFAULTABLE if parameter.field in config.defaults
    ) or "none (the bot's own defaults)"
    words = ", ".join(f"`{discord.utils.escape_markdown(word)}`" for word in config.banned_words) or "none"
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    embed.add_field(name="Channels where /imagine works", value=channels[:1024], inline=False)
    embed.add_field(name="Server defaults", value=defaults[:1024], inline=False)
    embed.add_field(name="NSFW outside age-restricted channels",
                    value=config.nsfw_policy or f"{default_policy} (the bot's default)", inline=True)
    embed.add_field(name="Queue cap per member",
                    value=str(config.queue_cap) if config.queue_cap else "the bot's own", inline=True)
    embed.add_field(name="Daily images per member",
                    value=str(config.daily_quota) if config.daily_quota else "no limit", inline=True)
    embed.add_field(name="Models", value=", ".join(config.allowed_models) or "every model", inline=True)
    embed.add_field(name="Mod log", value=f"<#{config.mod_log_channel_id}>" if config.mod_log_channel_id else "off",
                    inline=True)
    embed.add_field(name="Banned words and phrases", value=words[:1024], inline=False)
    embed.set_footer(text="Precedence: the bot operator's limits > these rules > a member's /settings > "
                          "what they type. Defaults: what they type > /settings > these > the bot's.")
    return embed


class ConfigGroup(app_commands.Group):
    """The /config command group; `interaction_check` admits members with Manage Server only."""

    def __init__(self, cog: ServerConfig) -> None:
        super().__init__(
            name="config", description="Server settings for imagine-bot (Manage Server)",
            default_permissions=discord.Permissions(manage_guild=True),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False))
        self.cog = cog

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        if interaction.type is discord.InteractionType.autocomplete:
            # Model names are no secret, and an autocomplete cannot be answered with a message.
            return True
        if interaction.guild_id is None or interaction.client.get_guild(interaction.guild_id) is None:
            await interaction.response.send_message(
                "/config works in a server that added imagine-bot (not in DMs or from a user install).",
                ephemeral=True)
            return False
        if not interaction.permissions.manage_guild:
            await interaction.response.send_message(
                "Only members with the Manage Server permission can change imagine-bot's server settings.",
                ephemeral=True)
            return False
        return True

    @app_commands.command(name="show", description="Show this server's imagine-bot settings")
    async def show(self, interaction: Interaction) -> None:
        await self.cog.reply(interaction, await self.cog.config(interaction), "imagine-bot settings for this server")

    @app_commands.command(name="channels", description="Where /imagine may be used (all channels by default)")
    @app_commands.describe(add="Allow /imagine in this channel", remove="No longer allow it in this channel",
                           everywhere="True: allow it in every channel again")
    async def channels(self, interaction: Interaction, add: discord.TextChannel | None = None,
                       remove: discord.TextChannel | None = None, everywhere: bool = False) -> None:
        config = await self.cog.config(interaction)
        allowed = [] if everywhere else list(config.allowed_channel_ids)
        if add is not None and add.id not in allowed:
            allowed.append(add.id)
        if remove is not None and remove.id in allowed:
            allowed.remove(remove.id)
        if len(allowed) > MAX_ALLOWED_CHANNELS:
            await interaction.response.send_message(
                f"At most {MAX_ALLOWED_CHANNELS} channels can be listed. Nothing was saved.", ephemeral=True)
            return
        described = ", ".join(f"<#{channel_id}>" for channel_id in allowed) or "every channel"
        await self.cog.save(interaction, f"channels → {described}", allowed_channel_ids=allowed)

    @app_commands.command(name="nsfw", description="What happens to NSFW-flagged images outside age-restricted channels")
    @app_commands.describe(policy="block: not posted (kept in the owner's history); spoiler: posted blurred; "
                                  "allow: posted as is")
    async def nsfw_policy(self, interaction: Interaction, policy: Literal["block", "spoiler", "allow"]) -> None:
        await self.cog.save(interaction, f"NSFW policy → {policy}", nsfw_policy=policy)

    @app_commands.command(name="banned_words", description="Words and phrases prompts may not use")
    @app_commands.describe(add="Words or phrases to ban, separated by commas",
                           remove="Words or phrases to allow again, separated by commas",
                           clear="True: remove every banned word")
    async def banned_words(self, interaction: Interaction, add: app_commands.Range[str, 1, 1000] | None = None,
                           remove: app_commands.Range[str, 1, 1000] | None = None, clear: bool = False) -> None:
        config = await self.cog.config(interaction)
        words = [] if clear else list(config.banned_words)
        known = {policy.normalize(word) for word in words}
        added = []
        for word in policy.parse_word_list(add or ""):
            if len(word) > policy.MAX_BANNED_WORD_CHARS or not policy.words(word):
                await interaction.response.send_message(
                    f"“{word[:50]}” can't be banned: a banned entry is 1 to {policy.MAX_BANNED_WORD_CHARS} "
                    "characters with at least one letter or digit. Nothing was saved.", ephemeral=True)
                return
            if policy.normalize(word) not in known:
                words.append(word)
                known.add(policy.normalize(word))
                added.append(word)
        dropped = {policy.normalize(word) for word in policy.parse_word_list(remove or "")}
        words = [word for word in words if policy.normalize(word) not in dropped]
        if len(words) > policy.MAX_BANNED_WORDS:
            await interaction.response.send_message(
                f"At most {policy.MAX_BANNED_WORDS} banned words and phrases. Nothing was saved.", ephemeral=True)
            return
        change = "banned words → " + (f"{len(words)} entries" if words else "none")
        if added:
            change += f" (added {len(added)})"
        await self.cog.save(interaction, change, banned_words=words)

    @app_commands.command(name="limits", description="Per-member queue cap and daily image quota (0 = no limit of this server's)")
    @app_commands.describe(queue_cap="Jobs a member may have queued or rendering at once (0: the bot's own cap)",
                           daily_quota="Images a member may make per UTC day (0: no limit)")
    async def limits(self, interaction: Interaction, queue_cap: app_commands.Range[int, 0, 1000] | None = None,
                     daily_quota: app_commands.Range[int, 0, MAX_QUOTA] | None = None) -> None:
        changes: dict[str, Any] = {}
        operator_cap = self.cog.bot.queue.per_owner_cap
        if queue_cap is not None:
            if queue_cap > operator_cap:
                await interaction.response.send_message(
                    f"The queue cap can be at most {operator_cap} (the bot operator's cap). Nothing was saved.",
                    ephemeral=True)
                return
            changes["queue_cap"] = queue_cap or None
        if daily_quota is not None:
            changes["daily_quota"] = daily_quota or None
        if not changes:
            await interaction.response.send_message("Give `queue_cap`, `daily_quota` or both.", ephemeral=True)
            return
        described = ", ".join(f"{name.replace('_', ' ')} → {value or 'off'}" for name, value in changes.items())
        await self.cog.save(interaction, described, **changes)

    @app_commands.command(name="models", description="Which models members may use (all by default)")
    @app_commands.describe(allow="Allow this model", disallow="No longer allow this model",
                           everything="True: allow every model again")
    async def models(self, interaction: Interaction, allow: str | None = None, disallow: str | None = None,
                     everything: bool = False) -> None:
        names = self.cog.bot.settings.model_names
        for name in (allow, disallow):
            if name is not None and name not in names:
                await interaction.response.send_message(
                    f"Unknown model {name!r}. Models: {', '.join(names)}. Nothing was saved.", ephemeral=True)
                return
        config = await self.cog.config(interaction)
        allowed = [] if everything else list(config.allowed_models)
        if allow is not None and allow not in allowed:
            allowed.append(allow)
        if disallow is not None:
            allowed = [name for name in (allowed or names) if name != disallow]
            if not allowed:
                await interaction.response.send_message(
                    "At least one model must stay allowed. Nothing was saved.", ephemeral=True)
                return
        default_model = config.defaults.get("model")
        if allowed and default_model is not None and default_model not in allowed:
            await interaction.response.send_message(
                f"The server default model {default_model!r} would not be allowed; change it with "
                "/config defaults first. Nothing was saved.", ephemeral=True)
            return
        await self.cog.save(interaction, f"models → {', '.join(allowed) or 'every model'}", allowed_models=allowed)

    @models.autocomplete("allow")
    @models.autocomplete("disallow")
    async def model_names(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=name, value=name) for name in self.cog.bot.settings.model_names
                if current.casefold() in name.casefold()][:25]

    @app_commands.command(name="mod_log", description="The channel where moderators see refusals, NSFW catches, "
                                                      "deletions and /config changes")
    @app_commands.describe(channel="Log to this channel", off="True: stop logging")
    async def mod_log(self, interaction: Interaction, channel: discord.TextChannel | None = None,
                      off: bool = False) -> None:
        if off:
            await self.cog.save(interaction, "mod log → off", mod_log_channel_id=None)
        elif channel is not None:
            await self.cog.save(interaction, f"mod log → <#{channel.id}>", mod_log_channel_id=channel.id)
        else:
            await interaction.response.send_message("Give a `channel`, or `off:True`.", ephemeral=True)


class ServerConfig(commands.Cog):
    """/config: per-server administration."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        self.group = ConfigGroup(self)
        reset = inspect.Parameter("reset", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=False)
        defaults = build_command(
            "defaults", "Server defaults for /imagine (inside the bot operator's limits)", SERVER_DEFAULTABLE,
            bot.queue.limits, model_choices(bot), self.defaults_command, extra=(reset,),
            extra_descriptions={"reset": "Clear every server default (options given with it are then saved)"})
        self.group.add_command(defaults)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.group)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.group.name)

    async def config(self, interaction: Interaction) -> GuildConfigRecord:
        assert interaction.guild_id is not None  # the group's check
        return await self.bot.store.guild_config(interaction.guild_id)

    async def reply(self, interaction: Interaction, config: GuildConfigRecord, title: str) -> None:
        embed = config_embed(config, server_defaults(self.bot.services), self.bot.settings.nsfw_policy, title=title)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    async def save(self, interaction: Interaction, change: str, **values: Any) -> None:
        """Store `values`, answer privately with every setting, and write the change to the mod log."""
        assert interaction.guild_id is not None
        config = await self.bot.store.update_guild_config(interaction.guild_id, **values)
        await self.reply(interaction, config, "Saved. imagine-bot settings for this server")
        log.info("guild %s: /config by %s: %s", interaction.guild_id, interaction.user.id, change)
        await modlog.post(self.bot, self.bot.store, interaction.guild_id, "config",
                          f"<@{interaction.user.id}> changed /config: {change}")

    async def defaults_command(self, interaction: Interaction, *, reset: bool = False, **options: Any) -> None:
        by_option = {parameter.option: parameter.field for parameter in SERVER_DEFAULTABLE}
        changes = {by_option[option]: value for option, value in options.items() if value is not None}
        config = await self.config(interaction)
        if not changes and not reset:
            await self.reply(interaction, config, "imagine-bot settings for this server")
            return
        merged = {**({} if reset else config.defaults), **changes}
        problem = self.validate(merged)
        if problem is None and config.allowed_models and merged.get("model") not in (None, *config.allowed_models):
            problem = f"Model {merged['model']!r} is not among this server's allowed models."
        if problem is not None:
            await interaction.response.send_message(f"{problem} Nothing was saved.", ephemeral=True)
            return
        described = ", ".join(f"{field} → {format_value(field, value)}" for field, value in changes.items())
        change = "defaults reset" + (f", then {described}" if described else "") if reset else f"defaults: {described}"
        await self.save(interaction, change, defaults=merged)

    def validate(self, values: dict[str, Any]) -> str | None:
        """The generation service's complaint about these defaults, or None if /imagine would accept them."""
        probe = {**{key: value for key, value in server_defaults(self.bot.services).items() if value is not None}, **values}
        try:
            self.bot.queue.prepare(GenerationRequest(prompt=VALIDATION_PROMPT, **probe))
        except RequestError as error:
            return str(error)
        return None


async def setup(bot: Host) -> None:
    await bot.add_cog(ServerConfig(bot))
