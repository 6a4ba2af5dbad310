"""/describe's answer: its numbered prompts, and a button per prompt that imagines it."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.views.base import CustomId, NUMBER, button
from bot.errors import UserFacingError, report_unexpected, send_ephemeral
from bot.intake import Refused, WorkOrder
from generation import RequestError
from storage import GenerationKind


log = logging.getLogger(__name__)
DESCRIBE_LINE = re.compile(r"^\*\*([1-4])\.\*\* (.+)$", re.MULTILINE)


def describe_text(prompts: list[str]) -> str:
    """The /describe message: numbered prompts, which its buttons read back (so they survive restarts)."""
    lines = [f"**{number}.** {discord.utils.escape_markdown(prompt)}" for number, prompt in enumerate(prompts, 1)]
    return "🔍 Prompts for this image — press a number to /imagine it:\n" + "\n".join(lines)


def described_prompts(text: str) -> dict[int, str]:
    return {int(number): _unescape(prompt) for number, prompt in DESCRIBE_LINE.findall(text or "")}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


DESCRIBE_ID = CustomId("describe", owner_id=NUMBER, number=r"[1-4]")


class DescribeButton(discord.ui.DynamicItem[discord.ui.Button["discord.ui.View"]],
                     template=DESCRIBE_ID.template):
    """1–4 under a /describe answer: /imagine that prompt. Anyone may, unless SHARE_RESULTS is off."""

    def __init__(self, owner_id: int, number: int) -> None:
        super().__init__(button(str(number), DESCRIBE_ID.build(owner_id=owner_id, number=number), emoji="🎨",
                                 style=discord.ButtonStyle.primary))
        self.owner_id = owner_id
        self.number = number

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str]) -> DescribeButton:
        return cls(int(match["owner_id"]), int(match["number"]))

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id != self.owner_id and not interaction.client.settings.share_results:
            await send_ephemeral(interaction, f"Not yours: only <@{self.owner_id}> can use these prompts. "
                                              "Use /describe to get your own.")
            return False
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            message = interaction.message
            prompt = described_prompts(message.content if message is not None else "").get(self.number)
            if prompt is None:
                raise UserFacingError("That prompt is no longer on this message; run /describe again.")
            order = WorkOrder(GenerationKind.IMAGINE, {"prompt": prompt}, with_defaults=True)
            outcome = await interaction.client.intake.submit(interaction, order)
            if isinstance(outcome, Refused):
                await send_ephemeral(interaction, outcome.message)
        except (UserFacingError, RequestError) as error:
            await send_ephemeral(interaction, str(error))
        except Exception as error:
            await report_unexpected(interaction, error, job_id=None, action="describe")


def describe_view(owner_id: int, count: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for number in range(1, count + 1):
        view.add_item(DescribeButton(owner_id, number))
    return view
