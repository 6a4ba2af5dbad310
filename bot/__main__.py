"""`python -m bot`: the bot on real Discord; without DISCORD_TOKEN it exits with status 2 and one line.

The offline playground is its own entry point (`python -m playground`, `make demo`); it reuses the
logging, CPU-thread default and signal handling below. Start-up prints only what a person needs.
Ctrl-C (SIGINT) or SIGTERM stops it once, cleanly: a running render stops at its next step, the
exit status is 0. A second instance on the same data folder refuses with one line, before touching it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import aiohttp
import discord

from bot.lock import AlreadyRunning, InstanceLock
from bot.settings import Settings
from generation import telemetry

# Exit status of a refused second instance (EX_TEMPFAIL: try again later). `make demo` treats it as
# "already said so" and adds no error line of its own.
EXIT_ALREADY_RUNNING = 75

# discord.py's log records that tell a newcomer nothing they can act on (the render libraries' own noise:
# generation.telemetry.log_setup).
DISCORD_NOISE = (
    "PyNaCl is not installed",  # discord.py < 2.7: voice support; the bot has no voice features
    "davey is not installed",  # discord.py 2.7: the same
    "Guilds intent seems to be disabled",  # SimCord's import-time check client; the bot has the intent
    "logging in using static token",  # discord.py: says nothing (and there is no token in the playground)
    "Privileged message content intent is missing",  # commands.Bot: the bot uses slash commands only
)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """generation.telemetry's one root handler, with discord.py's colours on a terminal and its noise dropped."""
    return telemetry.configure_logging(level, stream, terminal_formatter=discord.utils._ColourFormatter(),
                                       extra_noise=DISCORD_NOISE)


def load_settings() -> Settings:
    """The settings of the bot and the playground: .env and the environment, with the CPU-thread default
    of the configured models (RenderSettings.with_cpu_thread_default, as the render worker takes it)."""
    return Settings().with_cpu_thread_default()


def run_until_signalled(work: Callable[[asyncio.Event], Coroutine[Any, Any, Any]]) -> Any:
    """Run `work(stop)` on a fresh event loop; SIGINT/SIGTERM set `stop` once (a second one forces the exit)."""

    async def supervise() -> Any:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            if stop.is_set():  # second Ctrl-C: the clean stop is taking too long
                print("Stopping now.", file=sys.stderr, flush=True)
                os._exit(130)
            print("Stopping…", file=sys.stderr, flush=True)
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await work(stop)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    return asyncio.run(supervise())


# Without a token there is nothing to serve: say so and fail, so a service manager with a mistyped env
# file shows the unit as failed instead of quietly serving a local page.
NO_TOKEN = ("DISCORD_TOKEN is not set (environment or .env; see .env.example); "
            "for the offline playground run `make demo` (python -m playground).")
EXIT_NO_TOKEN = 2


def main() -> int:
    settings = load_settings()
    if settings.discord_token is None:
        print(NO_TOKEN, file=sys.stderr)
        return EXIT_NO_TOKEN
    telemetry.apply_log_format(configure_logging(settings.log_level), settings.log_format, settings.log_salt)
    return run_discord(settings)


def run_discord(settings: Settings) -> int:
    from bot import create_bot

    async def runner(stop: asyncio.Event) -> None:
        bot = create_bot(settings)
        async with bot:
            assert settings.discord_token is not None  # main() runs Discord only with a token
            login = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({login, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if login.done():
                login.result()  # a failed login raises here
                return
            await bot.close()  # stops the render at its next step, closes the store and the gateway
            await asyncio.gather(login, return_exceptions=True)

    try:
        with InstanceLock(settings.data_dir / "imagine-bot.lock", what="imagine-bot"):
            run_until_signalled(runner)
    except AlreadyRunning as refusal:
        print(refusal, file=sys.stderr)
        return EXIT_ALREADY_RUNNING
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
    print("imagine-bot stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
