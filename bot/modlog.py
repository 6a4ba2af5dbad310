"""The moderators' log: one message per event in the channel a server chose with `/config mod_log`.

Events: refusals (banned words, quota), NSFW catches, deletions by moderators and /config changes.
Posting never raises: a log that cannot be written (no channel set, no permission) is skipped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

if TYPE_CHECKING:
    from storage import Store

log = logging.getLogger(__name__)

MAX_ENTRY_CHARS = 1900
ICONS = {"refusal": "⛔", "nsfw": "🔞", "deletion": "🗑️", "config": "⚙️"}


def link(guild_id: int | None, channel_id: int | None, message_id: int | None = None) -> str:
    """A jump link to a message (or to the channel when there is no message)."""
    where = str(guild_id) if guild_id is not None else "@me"
    url = f"https://discord.com/channels/{where}/{channel_id}"
    return f"{url}/{message_id}" if message_id is not None else url


async def post(client: discord.Client, store: Store, guild_id: int | None, kind: str, text: str) -> None:
    """Write one entry in the server's mod-log channel, if it set one and the bot is in the server."""
    if guild_id is None:
        return
    if not client.is_ready():
        await client.wait_until_ready()  # recovery runs before the gateway's guild list has arrived
    if client.get_guild(guild_id) is None:
        return
    try:
        config = await store.guild_config(guild_id)
        if config.mod_log_channel_id is None:
            return
        channel = client.get_partial_messageable(config.mod_log_channel_id, guild_id=guild_id)
        entry = f"{ICONS.get(kind, '•')} {text}"
        if len(entry) > MAX_ENTRY_CHARS:
            entry = entry[:MAX_ENTRY_CHARS - 1] + "…"
        await channel.send(entry, allowed_mentions=discord.AllowedMentions.none())
    except Exception as error:
        log.warning("guild %s: could not write a %s entry to the mod log (%r)", guild_id, kind, error)
