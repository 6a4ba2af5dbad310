"""/history (your past generations, paged) and /show (re-post one with live buttons).

The pager is a plain View bound to the ephemeral message, with a timeout, rather than DynamicItems:
the optional prompt filter is free text that does not fit a 100-character custom_id, and an
ephemeral list is short-lived anyway. On timeout the buttons are disabled and /history starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import presentation
from bot.delivery import spoilered
from bot.views import result_layout, result_view
from storage import CorruptImage, GenerationKind, GenerationStatus

if TYPE_CHECKING:
    from bot.host import Host
    from storage import GenerationRecord, Store

Interaction = discord.Interaction["Host"]

log = logging.getLogger(__name__)

PAGE_SIZE = 10
# Under the 15-minute interaction-token lifetime, so on_timeout can still edit the message.
PAGER_TIMEOUT_S = 600.0
PROMPT_PREVIEW_CHARS = 80
REASON_PREVIEW_CHARS = 120

STATUS_LABELS: dict[GenerationStatus, str] = {
    GenerationStatus.QUEUED: "⏳ queued",
    GenerationStatus.RUNNING: "🎨 running",
    GenerationStatus.DONE: "✅ done",
    GenerationStatus.FAILED: "❌ failed",
    GenerationStatus.CANCELLED: "🚫 cancelled",
}


def is_moderator(interaction: Interaction) -> bool:
    """Moderators are members allowed to manage messages in this channel."""
    return interaction.permissions.manage_messages


def truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())  # newlines in a prompt would break the list layout
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_seed(record: GenerationRecord) -> int | None:
    if record.images:
        return min(record.images, key=lambda image: image.index).seed
    return record.seed


def format_entry(record: GenerationRecord) -> str:
    status = GenerationStatus(record.status)
    seed = record_seed(record)
    parts = [
        f"**#{record.id}**",
        discord.utils.format_dt(record.created_at, "R"),
        f"seed `{seed}`" if seed is not None else "seed not chosen yet",
        STATUS_LABELS[status],
    ]
    if record.kind is not GenerationKind.IMAGINE:
        origin = f" of #{record.parent_id}" if record.parent_id is not None else ""
        parts.insert(1, f"{record.kind.value}{origin}")
    if record.edit_mode == "instruction":  # bot.instruction_edits: the words changed a picture
        parts.insert(1, "instruction edit")
    line = " · ".join(parts)
    if status is GenerationStatus.FAILED and record.failure_reason:
        line += f": {discord.utils.escape_markdown(truncate(record.failure_reason, REASON_PREVIEW_CHARS))}"
    elif record.delivery_failure:
        # Rendered but never posted: the reason belongs in the list, and /show can still post it.
        reason = truncate(record.delivery_failure, REASON_PREVIEW_CHARS)
        line += f", not posted: {discord.utils.escape_markdown(reason)}"
    prompt = discord.utils.escape_markdown(truncate(record.prompt, PROMPT_PREVIEW_CHARS)) or "*(empty prompt)*"
    said = presentation.turn_line(record)
    if said is not None:  # a conversation turn: the lineage reads as what was said
        return f"{line}\n> 💬 {discord.utils.escape_markdown(truncate(said, 2 * PROMPT_PREVIEW_CHARS))}\n> {prompt}"
    return f"{line}\n> {prompt}"


class HistoryPager(discord.ui.View):
    """Newest-first pages of one member's generations, browsed by the member who asked."""

    def __init__(self, store: Store, *, viewer_id: int, owner: discord.abc.User, query: str | None) -> None:
        super().__init__(timeout=PAGER_TIMEOUT_S)
        self.store = store
        self.viewer_id = viewer_id
        self.owner = owner
        self.query = query
        # Keyset cursors: page k starts below cursors[k] (None = newest). Stable while new
        # generations arrive, unlike offsets.
        self.cursors: list[int | None] = [None]
        self.page = 0
        self.total = 0
        # The latest interaction on the message, whose token is used to disable the buttons on timeout.
        self.last_interaction: discord.Interaction | None = None

    async def render(self) -> discord.Embed:
        rows = await self.store.history(
            self.owner.id, before_id=self.cursors[self.page], limit=PAGE_SIZE + 1, query=self.query
        )
        entries, has_older = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
        if has_older and len(self.cursors) == self.page + 1:
            self.cursors.append(entries[-1].id)
        self.total = await self.store.count_history(self.owner.id, self.query)
        pages = max(1, math.ceil(self.total / PAGE_SIZE))

        self.newer.disabled = self.page == 0
        self.older.disabled = not has_older

        title = "Your generations" if self.owner.id == self.viewer_id else f"Generations of {self.owner.display_name}"
        embed = discord.Embed(title=title, colour=discord.Colour.blurple())
        embed.description = "\n".join(format_entry(record) for record in entries) or "Nothing on this page any more."
        filter_note = f" matching “{truncate(self.query, 40)}”" if self.query else ""
        embed.set_footer(
            text=f"Page {self.page + 1}/{pages} · {self.total} generation(s){filter_note} · /show <id> re-posts one"
        )
        return embed

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.viewer_id:
            await interaction.response.send_message(
                "These buttons page someone else's /history. Run /history to browse your own.", ephemeral=True
            )
            return False
        self.last_interaction = interaction
        return True

    async def turn(self, interaction: discord.Interaction, step: int) -> None:
        self.page = max(0, min(self.page + step, len(self.cursors) - 1))
        await interaction.response.edit_message(embed=await self.render(), view=self)

    @discord.ui.button(label="◀ Newer", style=discord.ButtonStyle.secondary)
    async def newer(self, interaction: discord.Interaction, button: discord.ui.Button[HistoryPager]) -> None:
        await self.turn(interaction, -1)

    @discord.ui.button(label="Older ▶", style=discord.ButtonStyle.secondary)
    async def older(self, interaction: discord.Interaction, button: discord.ui.Button[HistoryPager]) -> None:
        await self.turn(interaction, +1)

    async def on_timeout(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        if self.last_interaction is None:
            return
        try:
            await self.last_interaction.edit_original_response(view=self)
        except discord.HTTPException:
            pass  # the message was dismissed or its token expired; nothing left to tidy


class History(commands.Cog):
    """Browse past generations and bring one back."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot

    @property
    def store(self) -> Store:
        return self.bot.store

    @app_commands.command(name="history", description="Your past generations, newest first")
    @app_commands.describe(
        prompt="Only generations whose prompt contains this text",
        user="(Moderators) whose generations to list",
    )
    async def history(
        self,
        interaction: Interaction,
        prompt: app_commands.Range[str, 1, 200] | None = None,
        user: discord.User | None = None,
    ) -> None:
        owner: discord.abc.User = user or interaction.user
        if owner.id != interaction.user.id and not is_moderator(interaction):
            await interaction.response.send_message(
                f"You can only list your own generations. Viewing {owner.mention}'s history needs the "
                "Manage Messages permission (moderators). Run /history without `user` for yours.",
                ephemeral=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        pager = HistoryPager(self.store, viewer_id=interaction.user.id, owner=owner, query=prompt)
        pager.last_interaction = interaction
        embed = await pager.render()
        if pager.total == 0:
            pager.stop()
            whose = "You have" if owner.id == interaction.user.id else f"{owner.mention} has"
            if prompt:
                text = f"{whose} no generations whose prompt contains “{prompt}”."
            else:
                text = f"{whose} no generations yet. Try /imagine."
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
            return
        await interaction.followup.send(embed=embed, view=pager, ephemeral=True)

    @app_commands.command(name="show", description="Re-post one of your generations here, with its buttons")
    @app_commands.rename(generation_id="id")
    @app_commands.describe(generation_id="The generation's id, as listed by /history")
    async def show(self, interaction: Interaction, generation_id: app_commands.Range[int, 1]) -> None:
        record = await self.store.get(generation_id, include_deleted=True)
        if record is None:
            await interaction.response.send_message(
                f"There is no generation #{generation_id}. /history lists the ids of yours.", ephemeral=True
            )
            return
        if record.deleted:
            await interaction.response.send_message(
                f"Generation #{generation_id} was deleted, with its images, so it can't be shown again.",
                ephemeral=True)
            return
        if record.owner_id != interaction.user.id and not is_moderator(interaction):
            # Prompts can be personal, so generations are private to their owner and moderators.
            await interaction.response.send_message(
                f"Generation #{generation_id} belongs to another member. Only its owner or a moderator "
                "(Manage Messages) can re-post it. /history lists yours.",
                ephemeral=True,
            )
            return
        not_ready = self.not_ready_reason(record)
        if not_ready is not None:
            await interaction.response.send_message(not_ready, ephemeral=True)
            return
        # The content policy of the place it is shown in, as for a fresh result.
        screening = await self.bot.runner.screen(record, interaction.guild_id, interaction.channel_id)
        if screening.action == "hold":
            await interaction.response.send_message(
                f"Generation #{record.id} can't be shown here: {screening.reason(record.id)}.", ephemeral=True)
            return
        try:
            images = [
                await self.store.read_image(image) for image in sorted(record.images, key=lambda i: i.index)
            ]
        except CorruptImage:
            log.warning("image files of generation %s are missing or damaged", record.id, exc_info=True)
            seed = record_seed(record)
            await interaction.response.send_message(
                f"The image files of generation #{record.id} are missing or damaged, so it can't be re-posted. "
                f"/imagine with the same prompt and seed `{seed}` renders it again.",
                ephemeral=True,
            )
            return

        await interaction.response.defer(thinking=True)
        # The same message the runner posts; encoding a grid is CPU work, so it runs in a thread.
        encoded = await asyncio.to_thread(
            presentation.encode_result, record, images, size_limit=interaction.filesize_limit
        )
        result = presentation.result_message(record, encoded)
        if screening.action == "spoiler":
            result = spoilered(result)
        if self.bot.settings.result_layout == "gallery":
            await interaction.followup.send(files=result.files(), view=result_layout(
                record, result, spoiler=screening.action == "spoiler"))
        else:
            await interaction.followup.send(embed=result.embed, files=result.files(), view=result_view(record))

    def not_ready_reason(self, record: GenerationRecord) -> str | None:
        """Why a generation has no image to show yet, or None when it has."""
        status = GenerationStatus(record.status)
        if status is GenerationStatus.DONE:
            return None
        if status in (GenerationStatus.QUEUED, GenerationStatus.RUNNING):
            entry = self.bot.queue.snapshot().entry(str(record.id))
            if entry is None:
                where = "is waiting to be rendered"
            elif entry.position == 0:
                where = f"is rendering now (about {entry.eta_s:.0f} s left)"
            else:
                where = f"is queued: {presentation.queue_place(entry)} (about {entry.eta_s:.0f} s to go)"
            return f"Generation #{record.id} {where}. It is posted when it's done; /queue shows your jobs."
        if status is GenerationStatus.FAILED:
            reason = record.failure_reason or "no reason was recorded"
            return f"Generation #{record.id} failed, so there is no image to show: {reason}"
        return f"Generation #{record.id} was cancelled before it finished, so there is no image to show."


async def setup(bot: Host) -> None:
    await bot.add_cog(History(bot))
