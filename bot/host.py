"""The bot as command and button handlers see it: a commands.Bot with the app's services attached.

`bot.app.ImagineBot` is the one implementation; handlers import this module, never `bot.app`, so the
composition root is imported by nobody in the Discord layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from discord.ext import commands

if TYPE_CHECKING:
    from bot.intake import Intake
    from bot.policy import Screening
    from bot.services import Services
    from bot.settings import Settings
    from generation.queue import RenderQueue
    from storage import GenerationRecord, Store


class Screener(Protocol):
    async def screen(self, record: GenerationRecord, guild_id: int | None, channel_id: int | None) -> Screening:
        """What the content policy says about posting `record` in that channel."""
        ...


class Host(commands.Bot):
    """Declared here, set by bot.app.ImagineBot.setup_hook."""

    services: Services
    store: Store
    queue: RenderQueue
    settings: Settings
    intake: Intake
    runner: Screener  # the job runner, as far as handlers use it
