"""The content policy where results go, and telling a job's owner what happened to it.

`screen` decides (bot.policy.nsfw_decision) whether a finished result is posted, spoilered or held; what
flagged its images was decided when the render was finished (generation.queue.finish).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import discord

from bot import modlog
from bot.policy import NSFW_SOURCES, Screening, nsfw_decision
from generation.models import BUILTIN_MODELS

if TYPE_CHECKING:
    from bot.reply import Reply
    from bot.services import Services
    from storage import GenerationRecord

log = logging.getLogger(__name__)


async def quietly(step: Awaitable[Any], what: str, generation_id: int) -> None:
        """Await a bookkeeping step whose failure must not hide the outcome the user is about to see."""
        try:
            await step
        except Exception:
            log.exception("could not %s of job #%s", what, generation_id)


class Moderation:
    """The content policy and the owner's notices, for the runner and for /show."""

    def __init__(self, bot: discord.Client, services: Services) -> None:
        self.bot = bot
        self.services = services
        self.store = services.store
        self.settings = services.settings

    def age_restricted(self, channel_id: int | None) -> bool:
        """Whether the channel is age-restricted (Discord's NSFW channel setting; a thread follows its parent)."""
        channel = self.bot.get_channel(channel_id) if channel_id is not None else None
        is_nsfw = getattr(channel, "is_nsfw", None)
        return bool(is_nsfw()) if callable(is_nsfw) else False

    async def bot_in_guild(self, guild_id: int | None) -> bool:
        """Whether the bot is a member of that server (False in DMs and where only a member's own install
        reaches). Waits for the gateway's guild list first: recovery runs before it has arrived."""
        if guild_id is None:
            return False
        if not self.bot.is_ready():
            await self.bot.wait_until_ready()
        return self.bot.get_guild(guild_id) is not None

    async def blur_previews(self, guild_id: int | None, channel_id: int | None, model: str) -> bool:
        """Whether a job's live previews are blurred: the classifier and a model's safety checker see only the
        final image, so where the policy would hold or spoiler a flagged result (block, spoiler: the server's,
        or the operator's in DMs), outside age-restricted channels, an unchecked preview is not shown sharp.
        The shipped built-in model (coloured shapes, no safety checker) without a classifier is never flagged."""
        if self.age_restricted(channel_id):
            return False
        if self.services.finisher.classifier is None and self.settings.nsfw_classifier is None \
                and model in BUILTIN_MODELS:
            return False
        policy: str = self.settings.nsfw_policy
        if await self.bot_in_guild(guild_id):
            assert guild_id is not None
            policy = (await self.store.guild_config(guild_id)).nsfw_policy or policy
        return policy != "allow"

    async def screen(self, record: GenerationRecord, guild_id: int | None, channel_id: int | None) -> Screening:
        """What the content policy says about posting `record` in that channel."""
        flagged_by = frozenset(image.nsfw for image in record.images if image.nsfw)
        policy: str = self.settings.nsfw_policy
        if flagged_by and await self.bot_in_guild(guild_id):
            assert guild_id is not None
            policy = (await self.store.guild_config(guild_id)).nsfw_policy or policy
        age_restricted = self.age_restricted(channel_id)
        action = nsfw_decision(flagged_by=set(flagged_by), age_restricted=age_restricted, policy=policy)
        return Screening(action, flagged_by, policy, age_restricted)

    async def hold(self, record: GenerationRecord, screening: Screening, reply: Reply | None) -> None:
        """Keep a flagged result out of the channel: in /history (flagged), its owner told privately."""
        reason = screening.reason(record.id)
        await quietly(self.store.record_delivery_failure(record.id, f"held back: {reason}"),
                            "record the hold", record.id)
        public = f"🔞 Job #{record.id}: the result was held back by the content policy."
        await self.tell_owner(record, reply, public,
                               private=f"🔞 {reason[0].upper()}{reason[1:]}. It is kept in your /history.",
                               in_channel=f"{public} /history lists it.")

    async def log_nsfw(self, record: GenerationRecord, screening: Screening, message: discord.Message | None) -> None:
        sources = " and ".join(NSFW_SOURCES.get(source, source) for source in sorted(screening.flagged_by))
        outcome = {"hold": "held back", "spoiler": "posted as a spoiler", "post": "posted"}[screening.action]
        where = (modlog.link(record.guild_id, message.channel.id, message.id) if message is not None
                 else modlog.link(record.guild_id, record.channel_id))
        await modlog.post(self.bot, self.store, record.guild_id, "nsfw",
                          f"generation #{record.id} of <@{record.owner_id}> flagged by {sources}: {outcome} "
                          f"(policy {screening.policy}) — {where}")

    async def tell_owner(self, record: GenerationRecord, reply: Reply | None, public: str, *, private: str,
                          in_channel: str) -> None:
        """`public` on the reply and `private` to the owner while the reply lives; else `in_channel`,
        mentioning the owner, where the bot is in the server. What cannot be shown stays in /history."""
        if reply is not None and reply.usable():
            try:
                await reply.edit(content=public, embed=None, attachments=[], view=None)
                await reply.send_private(private)
                return
            except discord.HTTPException as error:
                log.info("job #%s: the reply is unusable (%s); telling the channel", record.id, error)
        if not await self.bot_in_guild(record.guild_id):
            log.info("job #%s: no reply and no channel to tell the owner; it is in /history", record.id)
            return
        try:
            channel = self.bot.get_partial_messageable(record.channel_id or 0, guild_id=record.guild_id)
            await channel.send(f"<@{record.owner_id}> {in_channel}", allowed_mentions=discord.AllowedMentions(users=True))
        except discord.HTTPException as error:
            log.info("job #%s: the owner could not be told (%s); it is in /history", record.id, error)
