"""Talking to the bot: replies to results, mentions, DMs and 💬 Continue threads read as turns.

Where a turn happens (see README "Talking to imagine-bot"):
- a reply to one of the bot's results: a turn on that result;
- a mention that is no reply: a new request from its words (inline --flags; a picture starts it);
- a DM: every message; one that is no reply continues from the member's latest result there; `new:` starts over;
- a thread opened with 💬 Continue: each message is a turn on the thread's latest result.
Without Discord's Message Content intent (the default) the bot reads only messages that mention it (a reply
that pings it does) and DMs; MESSAGE_CONTENT=true adds plain replies and thread messages. A message it
cannot read gets one short answer saying how to make it readable.

Exactly once: a message is claimed in the turns table (keyed by its id) before anything is answered; a
second delivery, a second gateway or a restart finds it taken. Turns a killed process claimed but never
finished are finished at start-up. Messages sent while no bot ran are not picked up (README says so).
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.errors import UserFacingError, apology
from bot.presentation import message_generation_ids
from bot.turn_intake import answer, submit_turn
from bot.turns import check_message, new_request, order_for, read_turn, starts_over
from generation import RequestError
from storage import GenerationStatus, TurnState

if TYPE_CHECKING:
    from bot.host import Host
    from bot.intake import WorkOrder
    from storage import GenerationRecord

log = logging.getLogger(__name__)

RECENT_MESSAGES = 50  # how far back a DM or thread is searched for its latest result
# With several gateways (SHARED_QUEUE) a turn claimed by a live one is not taken over before this age.
SHARED_RECOVERY_AGE = datetime.timedelta(minutes=5)
UNREADABLE = ("I can't read that message: without Discord's Message Content intent I only see messages that "
              "mention me. Reply again with the @mention on (or write @{name} before your words); an operator "
              "can enable the intent (MESSAGE_CONTENT=true).")


@dataclass(frozen=True)
class Addressed:
    """A message the bot is meant to answer, and what it is about."""

    words: str  # the text without mentions of the bot
    readable: bool  # False: Discord hid its content from the bot (no Message Content intent)
    referenced: discord.Message | None = None  # a reply: the message it answers (None: deleted or none)
    is_reply: bool = False
    in_thread: bool = False  # in a 💬 Continue thread


class Conversation(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot
        # Real time, as the turns table records it: turns claimed before this start belong to a dead process.
        self.started_at = datetime.datetime.now(datetime.UTC)

    async def cog_load(self) -> None:
        self.bot.intake.runner.spawn(self.finish_unfinished(), name="finish unfinished turns")

    # ------------------------------------------------------------------ which messages are turns

    def _words(self, message: discord.Message) -> str:
        me = self.bot.user
        text = message.content or ""
        if me is not None:
            text = re.sub(rf"<@!?{me.id}>", " ", text)
        return " ".join(text.split())

    async def addressed(self, message: discord.Message) -> Addressed | None:
        """Whether `message` is meant for the bot (a turn, or one that needs an answer); None: not for it."""
        me = self.bot.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return None
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return None
        in_dm = message.guild is None
        mentioned = any(user.id == me.id for user in message.mentions)
        readable = self.bot.settings.message_content or in_dm or mentioned
        words = self._words(message)
        if message.reference is not None and message.reference.message_id is not None:
            referenced = await self._referenced(message)
            to_me = referenced is not None and referenced.author.id == me.id
            if not (to_me or mentioned or in_dm):
                return None
            return Addressed(words, readable, referenced, is_reply=True)
        channel = message.channel
        in_thread = isinstance(channel, discord.Thread) and channel.owner_id == me.id and message.guild is not None
        if in_dm or mentioned or in_thread:
            return Addressed(words, readable, in_thread=in_thread)
        return None

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        reference = message.reference
        assert reference is not None and reference.message_id is not None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        if isinstance(reference.resolved, discord.DeletedReferencedMessage):
            return None
        try:
            return await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None

    # ------------------------------------------------------------------ the listener

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        addressed = await self.addressed(message)
        if addressed is None:
            return
        allowed = self.bot.settings.allowed_guilds
        if allowed and (message.guild is None or message.guild.id not in allowed):
            return
        if not await self.bot.store.turns.claim_message(message.id, channel_id=message.channel.id,
                                                        author_id=message.author.id):
            log.info("turn %s: already taken (a second delivery or another gateway)", message.id)
            return
        await self.take(message, addressed)

    async def take(self, message: discord.Message, addressed: Addressed) -> None:
        """Answer a claimed turn: queue its work, or record why not and say so; exactly one outcome."""
        turns = self.bot.store.turns
        try:
            await self._answer(message, addressed)
        except (UserFacingError, RequestError) as problem:
            await turns.finish(message.id, TurnState.ANSWERED, reason=str(problem)[:500])
            await answer(message, f"✋ {problem}")
        except Exception as error:
            log.exception("turn %s failed unexpectedly", message.id)
            await turns.finish(message.id, TurnState.FAILED, reason=f"internal error: {type(error).__name__}")
            await answer(message, apology(None))

    async def _answer(self, message: discord.Message, addressed: Addressed) -> None:
        if not addressed.readable:
            me = self.bot.user
            raise UserFacingError(UNREADABLE.format(name=me.name if me is not None else "imagine-bot"))
        words = addressed.words
        check_message(words, len(message.attachments))
        attachment = message.attachments[0] if message.attachments else None
        parent = await self.parent_of(message, addressed)
        fresh = starts_over(words)
        if parent is None or (fresh is not None and not addressed.is_reply):
            order, reading = new_request(fresh if fresh is not None else words, attachment)
            await submit_turn(self.bot, message, order, words, reading)
            return
        if attachment is not None:
            raise UserFacingError("A picture starts a new request: mention me with it in a message that is no "
                                  "reply. To change this result, reply with words only.")
        await self._continue(message, parent, words)

    async def _continue(self, message: discord.Message, parent: GenerationRecord, words: str) -> None:
        if parent.owner_id != message.author.id and not self.bot.settings.share_results:
            raise UserFacingError(f"That is <@{parent.owner_id}>'s result; on this bot only its owner can change "
                                  "it. Mention me with words for a picture of your own.")
        if parent.status is not GenerationStatus.DONE or not parent.images:
            raise UserFacingError(f"Job #{parent.id} has no picture to change ({parent.status.value}).")
        reading = await read_turn(self.bot.services, parent, words)
        order: WorkOrder = await order_for(self.bot.services, parent, reading)
        await submit_turn(self.bot, message, order, words, reading)

    @commands.Cog.listener()
    async def on_command_error(self, context: commands.Context[Host], error: commands.CommandError) -> None:
        """Mentions read as prefix commands find none (the bot has slash commands only): not worth a log line."""
        if not isinstance(error, commands.CommandNotFound):
            log.error("prefix command failed", exc_info=error)

    # ------------------------------------------------------------------ what a turn is about

    async def parent_of(self, message: discord.Message, addressed: Addressed) -> GenerationRecord | None:
        """The result a turn changes; None for a new request (UserFacingError where it is gone or no result)."""
        if addressed.is_reply:
            return await self._replied_result(addressed.referenced)
        if addressed.in_thread:
            record = await self.latest_result(message.channel, None)
            if record is None:
                record = await self.bot.store.get_by_message(message.channel.id)  # the thread's starter
            if record is None:
                raise UserFacingError("The result this thread was opened on is gone (deleted). Mention me in a "
                                      "channel with words for a new picture.")
            return record
        if message.guild is None:
            return await self.latest_result(message.channel, message.author.id)
        return None

    async def _replied_result(self, referenced: discord.Message | None) -> GenerationRecord:
        me = self.bot.user
        if referenced is None:
            raise UserFacingError("The message you replied to was deleted. Reply to one of my pictures, or "
                                  "mention me with words for a new one.")
        if me is None or referenced.author.id != me.id:
            raise UserFacingError("That message is not one of my pictures. Reply to a picture I posted, or "
                                  "mention me with words for a new one.")
        record = await self.bot.store.get_by_message(referenced.id)
        if record is not None:
            return record
        for generation_id in sorted(message_generation_ids(referenced), reverse=True):
            record = await self.bot.store.get(generation_id, include_deleted=True)
            if record is not None and record.deleted:
                raise UserFacingError(f"Generation #{generation_id} was deleted, so there is nothing to change.")
            if record is not None:
                return record
        raise UserFacingError("That message is not one of my pictures. Reply to a picture I posted, or mention "
                              "me with words for a new one.")

    async def latest_result(self, channel: discord.abc.Messageable, owner_id: int | None) -> GenerationRecord | None:
        """The newest result the bot posted in `channel` (of `owner_id` where given), within RECENT_MESSAGES."""
        me = self.bot.user
        async for posted in channel.history(limit=RECENT_MESSAGES):
            if me is None or posted.author.id != me.id:
                continue
            for generation_id in sorted(message_generation_ids(posted), reverse=True):
                record = await self.bot.store.get(generation_id)
                if record is not None and record.images and (owner_id is None or record.owner_id == owner_id):
                    return record
        return None

    # ------------------------------------------------------------------ after a restart

    async def finish_unfinished(self) -> None:
        """Turns a previous process claimed but never finished (killed in between): answer them now."""
        await self.bot.wait_until_ready()
        cutoff = self.started_at - (SHARED_RECOVERY_AGE if self.bot.settings.shared_queue else datetime.timedelta())
        for turn in await self.bot.store.turns.unfinished():
            if turn.created_at >= cutoff:
                continue  # a live gateway's (or this process's own) turn
            message = await self._fetch(turn.channel_id, turn.message_id)
            if message is None:
                await self.bot.store.turns.finish(turn.message_id, TurnState.FAILED,
                                                  reason="the message was gone after a restart")
                continue
            log.info("turn %s: finishing it after a restart", turn.message_id)
            addressed = await self.addressed(message)
            if addressed is None:
                await self.bot.store.turns.finish(turn.message_id, TurnState.ANSWERED, reason="not a turn")
                continue
            await self.take(message, addressed)

    async def _fetch(self, channel_id: int, message_id: int) -> discord.Message | None:
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                return None
            return await channel.fetch_message(message_id)
        except discord.HTTPException as error:
            log.info("turn %s: message not found after a restart (%s)", message_id, error)
            return None


async def setup(bot: Host) -> None:
    await bot.add_cog(Conversation(bot))
