"""/queue: where a member's jobs stand in the render queue, and how long the whole queue is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.presentation import queue_place

if TYPE_CHECKING:
    from bot.host import Host
    from generation import QueueEntry
    from generation.queue import RenderQueue

PROMPT_PREVIEW_CHARS = 60


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def job_label(key: str) -> str:
    # The bot keys jobs by their storage id, which /show and /history also use.
    return f"#{key}" if key.isdigit() else f"`{key}`"


class Queue(commands.Cog):
    """The render queue as a member sees it."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot

    @property
    def render_queue(self) -> RenderQueue:
        return self.bot.queue

    @app_commands.command(name="queue", description="Your jobs in the render queue, with positions and ETA")
    async def queue(self, interaction: discord.Interaction[Host]) -> None:
        snapshot = self.render_queue.snapshot()
        mine = snapshot.for_owner(str(interaction.user.id))
        waiting = sum(1 for entry in snapshot.entries if entry.position > 0)
        rendering = len(snapshot.entries) - waiting

        embed = discord.Embed(title="Render queue", colour=discord.Colour.blurple())
        if snapshot.entries:
            summary = f"{len(snapshot.entries)} job(s) in the queue: {rendering} rendering, {waiting} waiting."
        else:
            summary = "The render queue is empty."
        if snapshot.avg_render_s > 0:
            summary += f" A render takes about {format_duration(snapshot.avg_render_s)}."
        if mine:
            lines = [self.format_entry(entry) for entry in sorted(mine, key=lambda e: e.position)]
            embed.description = summary + "\n\n**Your jobs**\n" + "\n".join(lines)
        else:
            embed.description = summary + "\n\nYou have no jobs in the queue. /history lists your finished ones."
        await interaction.response.send_message(embed=embed, ephemeral=True)

    def format_entry(self, entry: QueueEntry) -> str:
        if entry.position == 0:
            where = f"🎨 rendering now, done in about {format_duration(entry.eta_s)}"
        else:
            where = f"⏳ {queue_place(entry)}, done in about {format_duration(entry.eta_s)}"
        queued_prompt = self.render_queue.prompt(entry.key)
        prompt = ""
        if queued_prompt is not None:
            text = " ".join(queued_prompt.split())
            if len(text) > PROMPT_PREVIEW_CHARS:
                text = text[: PROMPT_PREVIEW_CHARS - 1] + "…"
            prompt = f" — {discord.utils.escape_markdown(text)}"
        return f"**{job_label(entry.key)}** · {where}{prompt}"


async def setup(bot: Host) -> None:
    await bot.add_cog(Queue(bot))
