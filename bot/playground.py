"""The offline playground: the real bot against SimCord's Discord-like Preview page on 127.0.0.1.

A server with one channel and two members (alice, bob) is created; the page's "Viewing as" switch
lets a person act as either. Nothing leaves this machine.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Any

import simcord

from bot.settings import Settings

log = logging.getLogger(__name__)


async def run_playground(settings: Settings, *, ready: asyncio.Event | None = None,
                         urls: list[str] | None = None) -> None:
    """Serve the playground until the page's "End preview session" or Ctrl-C.

    `ready`/`urls` let a caller (the screenshot script, a test) learn the URL without parsing stdout.
    """
    from bot import create_bot

    # The simulated world starts empty each run, so the playground keeps its own data folder and
    # starts it afresh: recovered jobs would otherwise point at channels that no longer exist.
    data_dir = settings.data_dir / "playground"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_dir": data_dir, "database_url": None})

    env_ref: dict[str, simcord.Env] = {}

    def idle_wait(awaitable: Any) -> Any:
        # SimCord must be told that an idle render queue is an expected, external wait.
        return env_ref["env"].external_wait(awaitable, reason="render queue idle")

    bot = create_bot(settings, idle_wait=idle_wait)
    # The page shows a result once the bot's work settles, so the settle window must cover a render.
    env = simcord.Env(bot, settle_timeout=settings.playground_settle_s, check_errors=False)
    env_ref["env"] = env
    await env.start()
    try:
        guild = env.create_guild("imagine-bot playground")
        channel = guild.create_text_channel("imagine")
        alice = guild.add_member(env.create_user("alice"))
        bob = guild.add_member(env.create_user("bob"))
        async with env.preview(channel, viewers=[alice, bob], layout="channel",
                               port=settings.playground_port) as preview:
            print(f"imagine-bot playground: {preview.url}", flush=True)
            print("Open it in a browser; type /imagine. Ctrl-C stops.", flush=True)
            if urls is not None:
                urls.append(preview.url)
            if ready is not None:
                ready.set()
            await preview.wait_closed()
    finally:
        await env.shutdown()
