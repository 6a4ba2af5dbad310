"""A turn's work through the one intake: merge, validation, server rules, queue room, the record, then the
answer — a reply to the member's message that becomes the result.

`submit_turn` mirrors `Intake.submit` for a message instead of an interaction: the same `Intake.draft`
(merge, validation, allowed channels, banned words, quota, caps), the member's words checked for banned
words too, and the generation recorded with the words, their reading and the claimed message (the turn
turns queued in the same transaction) before anything is posted. The status line and the result are one
message: the bot's reply to the turn, edited as the job moves (`MessageReply`).
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

import discord

from bot import modlog, policy
from bot.intake import Place, PolicyRefusal
from bot.reply import DEFAULT_UPLOAD_LIMIT, Reply
from generation import RequestError
from generation.queue.records import request_to_params

if TYPE_CHECKING:
    from bot.host import Host
    from bot.intake import WorkOrder
    from generation.conversation import Interpretation
    from storage import GenerationRecord

log = logging.getLogger(__name__)

# A bot's own message can be edited for as long as it exists: no token runs out.
FOREVER = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
NO_MENTIONS = discord.AllowedMentions.none()


class MessageReply(Reply):
    """The bot's reply to a turn, used as the job's status line and then its result (as `Reply` is for a
    command's thinking message). Nothing is private in a channel: private notes are replies too."""

    def __init__(self, message: discord.Message, filesize_limit: int = DEFAULT_UPLOAD_LIMIT) -> None:
        # No webhook: every method that would use one is overridden.
        self.message = message
        self.expires_at = FOREVER
        self.filesize_limit = filesize_limit
        self.message_id = message.id

    def usable(self) -> bool:
        return True

    async def edit(self, **fields: Any) -> discord.Message:
        return await self.message.edit(**fields)

    async def send_private(self, text: str) -> None:
        await self.message.reply(text, allowed_mentions=NO_MENTIONS)


def place_of(message: discord.Message) -> Place:
    channel = message.channel
    parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
    return Place(message.guild.id if message.guild is not None else None, channel.id, parent_id)


def upload_limit(message: discord.Message) -> int:
    return message.guild.filesize_limit if message.guild is not None else DEFAULT_UPLOAD_LIMIT


async def answer(message: discord.Message, text: str) -> discord.Message | None:
    """A short reply to the member's message (no pings); None where Discord refused it."""
    try:
        return await message.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
    except discord.HTTPException as error:
        log.info("turn %s: could not answer (%s): %s", message.id, error, text)
        return None


async def check_banned_words(host: Host, message: discord.Message, words: str) -> None:
    """The server's banned words on the member's own words (the resulting prompt is checked by the intake)."""
    place = place_of(message)
    config = await host.intake.guild_config(place.guild_id)
    if config is None:
        return
    found = policy.banned_phrase_in((words,), config.banned_words)
    if found is not None:
        raise PolicyRefusal(
            "That message uses a word or phrase this server does not allow, so nothing was queued. "
            "Rephrase it and try again.",
            log=f"turn refused (banned word “{found}”): “{discord.utils.escape_markdown(words[:300])}”")


async def submit_turn(host: Host, message: discord.Message, order: WorkOrder, words: str,
                      reading: Interpretation) -> GenerationRecord:
    """Validate, record and queue a turn's work; its answer is the reply that becomes the result.

    RequestError (a PolicyRefusal for a server's rule, logged for its moderators) when it is refused:
    nothing is recorded then.
    """
    intake, store, owner_id = host.intake, host.store, message.author.id
    place = place_of(message)
    try:
        await check_banned_words(host, message, words)
        async with intake.member_lock(owner_id):
            drafts = intake.expand(order)
            if len(drafts) > 1:
                raise RequestError("One picture per message: use /imagine for {a, b} permutations and --repeat.")
            draft = await intake.draft(owner_id, drafts[0], place)
            try:
                record = await store.create_generation(
                    owner_id=owner_id, guild_id=place.guild_id, channel_id=place.channel_id, kind=order.kind,
                    parent_id=order.parent.id if order.parent is not None else None,
                    params=request_to_params(draft.request), init_image=draft.request.init_image,
                    init_image_url=order.attachment.url if order.attachment is not None else None,
                    source_index=order.source_index, turn_text=words, turn_reading=reading.to_dict(),
                    turn_message_id=message.id)
            except BaseException:
                if draft.reservation is not None:
                    draft.reservation.release()
                raise
    except PolicyRefusal as refusal:
        if refusal.log is not None:
            intake.runner.spawn(modlog.post(host, store, place.guild_id, "refusal",
                                          f"<@{owner_id}>: {refusal.log} in "
                                          f"{modlog.link(place.guild_id, place.channel_id, message.id)}"),
                              name="mod log")
        raise
    status = await answer(message, status_line(record, reading))
    reply = MessageReply(status, upload_limit(message)) if status is not None else None
    intake.runner.start(record, draft.request, draft.reservation, reply, order.attachment)
    return record


def status_line(record: GenerationRecord, reading: Interpretation) -> str:
    """The first answer: the job, what the words were read as, and a note where the reading was a choice."""
    lines = [f"⏳ Job #{record.id} queued… {reading.summary}".rstrip()]
    if reading.reading:
        lines.append(f"-# I {reading.reading}" if reading.reading.startswith("read") else f"-# {reading.reading}")
    if reading.fallback:
        lines.append(f"-# The interpreter model was not used ({reading.fallback}); the built-in rules read this.")
    return "\n".join(lines)
