"""The message that answers a command: the interaction's original response, edited through its token.

Discord keeps an interaction token for 15 minutes. The token is stored with the job, so a restarted
bot can still edit the same "thinking…" message while it lives (`Reply.from_record`); after that the
result goes to the channel as a normal message.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, cast

import discord

if TYPE_CHECKING:
    from storage import GenerationRecord

TOKEN_LIFETIME = datetime.timedelta(minutes=15)
# Leave a margin for a slow upload that starts just before the token runs out.
TOKEN_MARGIN = datetime.timedelta(seconds=30)
# Discord's attachment limit when nothing better is known (a guild without boosts).
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


class _OriginalMessage:
    """`@original`, the webhook routes' name for an interaction's first response, in place of a message id.

    Not a str: discord.py percent-quotes str route parameters ("%40original"), which Discord decodes but
    stricter routers (SimCord) do not; any other object is formatted as is.
    """

    def __format__(self, spec: str) -> str:
        return "@original"


ORIGINAL = cast(int, _OriginalMessage())


class Reply:
    """The original response of one interaction, reachable for as long as its token lives."""

    def __init__(self, webhook: discord.Webhook, expires_at: datetime.datetime,
                 filesize_limit: int = DEFAULT_UPLOAD_LIMIT, message_id: int = ORIGINAL) -> None:
        self.webhook = webhook
        self.expires_at = expires_at
        self.filesize_limit = filesize_limit
        self.message_id = message_id  # the original response, or one of the interaction's follow-ups

    @classmethod
    def from_interaction(cls, interaction: discord.Interaction[Any], message_id: int = ORIGINAL) -> Reply:
        return cls(interaction.followup, interaction.created_at + TOKEN_LIFETIME, interaction.filesize_limit,
                   message_id)

    @classmethod
    def from_record(cls, client: discord.Client, record: GenerationRecord) -> Reply | None:
        """The stored interaction of a job, if it has one that still lives."""
        if record.interaction_token is None or record.interaction_expires_at is None or client.application_id is None:
            return None
        webhook = discord.Webhook.partial(client.application_id, record.interaction_token, client=client)
        reply = cls(webhook, record.interaction_expires_at)
        return reply if reply.usable() else None

    def usable(self) -> bool:
        """Whether the token still has time for one more edit."""
        return discord.utils.utcnow() < self.expires_at - TOKEN_MARGIN

    async def edit(self, **fields: Any) -> discord.Message:
        return await self.webhook.edit_message(self.message_id, **fields)

    async def send_private(self, text: str) -> None:
        """A follow-up only the user sees (after the original response has been edited at least once)."""
        await self.webhook.send(text, ephemeral=True)
