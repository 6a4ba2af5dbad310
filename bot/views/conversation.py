"""The conversation buttons under results: 💬 Continue (a thread on the result, where every message is a
turn on its latest picture) and ↩️ Not what I meant (the Edit form, filled with what a turn was read as)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import send_ephemeral
from bot.views.base import GenerationButton, Interaction, button
from bot.views.generation_buttons import EditModal

if TYPE_CHECKING:
    from storage import GenerationRecord

log = logging.getLogger(__name__)

THREAD_NAME_CHARS = 90  # Discord allows 100


def thread_name(record: GenerationRecord) -> str:
    prompt = " ".join(record.prompt.split()) or "picture"
    name = f"#{record.id} · {prompt}"
    return name if len(name) <= THREAD_NAME_CHARS else name[:THREAD_NAME_CHARS - 1] + "…"


def how_to_talk(message_content: bool) -> str:
    """How a member addresses the bot in a thread, with or without the Message Content intent."""
    if message_content:
        return ("Write what to change — “make it night”, “wider”, “again” — and each message changes the latest "
                "picture.")
    return ("Mention me with what to change — “@imagine-bot make it night”, “@imagine-bot wider” — and each "
            "message changes the latest picture.")


class ContinueButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                     template=r"gen:talk:(?P<generation_id>[0-9]+)"):
    """💬 Continue: a thread on the result; each message in it is a turn on the thread's latest result."""

    open_to_everyone = True

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(button("Continue", f"gen:talk:{generation_id}", emoji="💬", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        channel, message = interaction.channel, interaction.message
        if isinstance(channel, discord.Thread):
            await send_ephemeral(interaction, "This is a thread already: " + how_to_talk(
                interaction.client.settings.message_content))
            return
        if interaction.guild is None or message is None or not isinstance(channel, discord.TextChannel):
            await send_ephemeral(interaction, "Threads exist in server text channels only. Here, reply to the "
                                              "picture with what to change (in DMs, just write).")
            return
        thread = channel.get_thread(message.id)
        if thread is None:
            try:
                thread = await message.create_thread(name=thread_name(self.record))
            except discord.HTTPException as error:
                log.info("generation #%s: no thread (%s)", self.record.id, error)
                await send_ephemeral(interaction, "I can't open a thread here (I need the Create Public Threads "
                                                  "permission). Reply to the picture with what to change instead.")
                return
            how = how_to_talk(interaction.client.settings.message_content)
            await thread.send(f"💬 Talking about #{self.record.id}. {how}",
                              allowed_mentions=discord.AllowedMentions.none())
        await send_ephemeral(interaction, f"Continue in {thread.mention}.")


class MeantModal(EditModal):
    """The Edit form on the turn's parent, filled with the prompt the turn was read as (seed kept)."""

    def __init__(self, parent: GenerationRecord, turn: GenerationRecord) -> None:
        super().__init__(parent)
        self.title = f"What did you mean? (#{parent.id})"
        self.prompt.default = turn.prompt[:1000]
        self.negative_prompt.default = (turn.negative_prompt or "")[:1000]
        self.keep_seed.default = True


class NotWhatIMeantButton(GenerationButton, discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                          template=r"gen:meant:(?P<generation_id>[0-9]+)"):
    """↩️ Not what I meant, under a turn's result: fix the reading by hand, from the picture it changed."""

    def __init__(self, generation_id: int, row: int | None = None) -> None:
        super().__init__(button("Not what I meant", f"gen:meant:{generation_id}", emoji="↩️", row=row))
        self.generation_id = generation_id

    async def act(self, interaction: Interaction) -> None:
        store = interaction.client.store
        parent = await store.get(self.record.parent_id) if self.record.parent_id is not None else None
        await interaction.response.send_modal(MeantModal(parent or self.record, self.record))


def conversation_buttons(record: GenerationRecord, row: int) -> list[discord.ui.Item[Any]]:
    """Continue under results in servers; Not what I meant under a turn's result."""
    items: list[discord.ui.Item[Any]] = []
    if record.guild_id is not None:
        items.append(ContinueButton(record.id, row=row))
    if record.turn_text is not None:
        items.append(NotWhatIMeantButton(record.id, row=row))
    return items
