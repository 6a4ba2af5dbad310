"""`python -m bot`: real Discord when DISCORD_TOKEN is set, the offline playground otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys

import aiohttp
import discord

from bot.settings import Settings


def main() -> int:
    settings = Settings()
    discord.utils.setup_logging(level=getattr(logging, settings.log_level.upper(), logging.INFO), root=True)
    if settings.discord_token is None:
        from bot.playground import run_playground

        try:
            asyncio.run(run_playground(settings))
        except KeyboardInterrupt:
            pass
        print("Playground stopped.")
        return 0
    return run_discord(settings)


def run_discord(settings: Settings) -> int:
    from bot import create_bot

    async def runner() -> None:
        bot = create_bot(settings)
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())

    try:
        asyncio.run(runner())
    except discord.LoginFailure:
        print("Discord rejected DISCORD_TOKEN: check the bot token in your .env "
              "(Developer Portal → your application → Bot → Reset Token).", file=sys.stderr)
        return 2
    except discord.PrivilegedIntentsRequired:
        print("Discord refused a privileged intent; imagine-bot needs none — check your intents settings.",
              file=sys.stderr)
        return 2
    except (aiohttp.ClientConnectionError, OSError) as error:
        print(f"Could not reach Discord ({error.__class__.__name__}: {error}); check the network.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
