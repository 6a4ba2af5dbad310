"""imagine-bot's Discord layer. `bot.create_bot(settings)` builds the bot; `python -m bot` runs it."""

from __future__ import annotations

from typing import Any

__all__ = ["create_bot"]


def __getattr__(name: str) -> Any:
    # Imported on first use so `bot.settings` stays light (no torch/diffusers import for config tools).
    if name == "create_bot":
        from bot.app import create_bot

        return create_bot
    raise AttributeError(f"module 'bot' has no attribute {name!r}")
