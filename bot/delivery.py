"""Posting a finished generation, once: on the interaction's reply while its token lives, else in the
channel (recorded first, found again after a restart); retries with backoff; what cannot be posted is
kept in /history with why."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot import presentation
from bot.moderation import Moderation, quietly
from bot.reply import DEFAULT_UPLOAD_LIMIT, Reply
from bot.views import result_layout, result_view
from generation.prompt_words import skipped_note
from generation.telemetry import Refusal
from storage import CorruptImage

if TYPE_CHECKING:
    from bot.services import Services
    from storage import GenerationRecord

log = logging.getLogger(__name__)

# Upload retries after a 5xx / 429: the waits between attempts (3 tries in all).
RETRY_DELAYS_S = (0.5, 1.5)
# How far back recovery looks in a channel for a result it may have posted just before dying.
RECENT_MESSAGES = 50


def spoilered(result: presentation.ResultMessage) -> presentation.ResultMessage:
    """The same message with its image as a spoiler (`SPOILER_` file name) and no unblurred embed copy."""
    embed = result.embed.copy()
    embed.set_image(url=None)
    image = dataclasses.replace(result.image, filename=f"SPOILER_{result.image.filename}")
    return dataclasses.replace(result, embed=embed, image=image)


def _retryable(error: Exception) -> bool:
    """Worth another upload attempt: Discord's 5xx / 429, or the connection itself failing."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, OSError))


def _reply_gone(error: Exception) -> bool:
    """A 4xx on the interaction's webhook (but for rate limits): no use trying that reply again."""
    return isinstance(error, discord.HTTPException) and 400 <= error.status < 500 and error.status != 429


def delivery_nonce(generation_id: int) -> str:
    """Discord drops a second message with the same nonce sent within a few minutes (enforce_nonce)."""
    return f"imagine-{generation_id}"


class InteractionOnly(Exception):
    """Only the interaction could have carried this result, and its token is gone."""


class Delivery:
    def __init__(self, bot: discord.Client, services: Services, moderation: Moderation, *,
                 retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.bot = bot
        self.store = services.store
        self.queue = services.queue
        self.settings = services.settings
        self.moderation = moderation
        self.retry_delays_s = retry_delays_s
        self.metrics = services.metrics

    def channel_upload_limit(self, guild_id: int | None) -> int:
        guild = self.bot.get_guild(guild_id) if guild_id is not None else None
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def deliver(self, record: GenerationRecord, reply: Reply | None) -> discord.Message | None:
        """Post a finished generation once; retries 5xx/429 with backoff; records the message or the failure.

        Never raises (but for cancellation): whatever goes wrong is logged with the job id, kept in the
        record as its delivery failure (so /history shows why), and told to the user while the token lives.
        """
        screening = await self.moderation.screen(record, record.guild_id, record.channel_id)
        if screening.action == "hold":
            await self.moderation.hold(record, screening, reply)
            self.metrics.refused(Refusal.NSFW)
            await self.moderation.log_nsfw(record, screening, None)
            return None
        try:
            image_bytes = [await self.store.read_image(image) for image in record.images]
            message, last_error, reply = await self._post(record, reply, image_bytes,
                                                          spoiler=screening.action == "spoiler")
        except CorruptImage as error:
            reason = f"stored image unreadable: {error}"
        except Exception as error:
            log.exception("job #%s: posting the result failed unexpectedly", record.id)
            reason = f"internal error while posting: {type(error).__name__}"
        else:
            if message is not None:
                await quietly(self.store.record_delivery(record.id, message.channel.id, message.id),
                                    "record the delivery", record.id)
                if screening.flagged_by - {"unchecked"} or screening.action != "post":
                    await self.moderation.log_nsfw(record, screening, message)
                return message
            if isinstance(last_error, InteractionOnly):
                reason = str(last_error)
            else:
                reason = f"Discord refused the upload: {last_error}"
            log.error("job #%s: %s", record.id, reason)
        self.metrics.delivery_attempt("failed")
        await quietly(self.store.record_delivery_failure(record.id, reason), "record the delivery failure",
                            record.id)
        if reply is not None and reply.usable():
            # The upload failed, a short text reply may not: tell the user where the result is.
            try:
                await reply.send_private(
                    f"⚠️ Generation #{record.id} is done but could not be posted here ({reason}). "
                    f"It is kept in your history: /show id:{record.id}")
            except discord.HTTPException:
                pass
        return None

    async def _post(self, record: GenerationRecord, reply: Reply | None, image_bytes: list[bytes], *,
                    spoiler: bool = False) -> tuple[discord.Message | None, Exception | None, Reply | None]:
        """Upload attempts: (the message, None, …) or (None, the last error, the reply still in use).

        Where the bot is not in the server (a user install) or in DMs, only the interaction can carry
        the result: there is no channel fallback.
        """
        encoded: dict[int, presentation.EncodedImage] = {}
        skipped = await asyncio.to_thread(self.queue.skipped_words, record.model or "", record.prompt)
        warning = skipped_note(skipped, record.model or "The model")
        last_error: Exception | None = None
        for attempt in range(len(self.retry_delays_s) + 1):
            if reply is not None and not reply.usable():
                reply = None  # too old to edit: post a normal channel message instead
            # A conversation turn in a DM: the member wrote to the bot there, so the bot may post there too.
            dm_turn = record.guild_id is None and record.turn_text is not None
            if reply is None and not dm_turn and not await self.moderation.bot_in_guild(record.guild_id):
                return None, InteractionOnly(
                    "the interaction expired and the bot cannot post in this channel (a DM or a server "
                    f"that did not add it); /show id:{record.id} posts it"), None
            limit = reply.filesize_limit if reply is not None else self.channel_upload_limit(record.guild_id)
            if limit not in encoded:
                encoded[limit] = await asyncio.to_thread(
                    presentation.encode_result, record, image_bytes, size_limit=limit)
            result = presentation.result_message(record, encoded[limit], mention_owner=reply is None, warning=warning)
            if spoiler:
                result = spoilered(result)
            fields = self._result_fields(record, result, spoiler=spoiler)
            try:
                message: discord.Message
                if reply is not None:
                    # Editing the original response is idempotent: a restart may repeat it safely.
                    message = await reply.edit(**fields, attachments=result.files())
                else:
                    message = await self._post_in_channel(record, result, fields)
            except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                last_error = error
                if reply is not None and _reply_gone(error):
                    # The token expired, or is unknown to Discord, or the status message was deleted:
                    # the channel still works.
                    log.info("job #%s: original response unusable (%s); posting in the channel", record.id, error)
                    reply = None
                    self.metrics.delivery_fallback()
                    continue
                if not _retryable(error) or attempt == len(self.retry_delays_s):
                    break
                log.warning("job #%s: upload failed (%r), retrying", record.id, error)
                self.metrics.delivery_attempt("retry")
                await asyncio.sleep(self.retry_delays_s[attempt])
                continue
            self.metrics.delivery_attempt("posted")
            return message, None, reply
        return None, last_error, reply

    def _result_fields(self, record: GenerationRecord, result: presentation.ResultMessage, *,
                       spoiler: bool) -> dict[str, Any]:
        """content, embed and view of a result message in the layout RESULT_LAYOUT asks for."""
        if self.settings.result_layout == "gallery":
            return {"content": None, "embed": None, "view": result_layout(record, result, spoiler=spoiler)}
        return {"content": result.content, "embed": result.embed, "view": result_view(record)}

    async def _post_in_channel(self, record: GenerationRecord, result: presentation.ResultMessage,
                               fields: dict[str, Any]) -> discord.Message:
        """A channel message, at most once: the intent is recorded first, and a restart that finds it
        looks for the post in the channel before posting again; the nonce covers a retry within minutes."""
        channel = self.bot.get_partial_messageable(record.channel_id or 0, guild_id=record.guild_id)
        if record.delivery_started_at is not None:
            earlier = await self._find_earlier_post(channel, record.id)
            if earlier is not None:
                log.info("job #%s: found the result posted before a restart (message %s)", record.id, earlier.id)
                return earlier
        else:
            record = await self.store.record_delivery_started(record.id)
        return await channel.send(**fields, files=result.files(), nonce=delivery_nonce(record.id))

    async def _find_earlier_post(self, channel: discord.PartialMessageable, generation_id: int,
                                 ) -> discord.Message | None:
        bot_user = self.bot.user
        try:
            async for message in channel.history(limit=RECENT_MESSAGES):
                if bot_user is not None and message.author.id == bot_user.id and (
                        generation_id in presentation.message_generation_ids(message)):
                    return message
        except discord.HTTPException as error:
            log.info("job #%s: could not read the channel for an earlier post (%s)", generation_id, error)
        return None
