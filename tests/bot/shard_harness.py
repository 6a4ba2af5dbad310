"""A sharded gateway process for the sharding test: the real bot (ShardedImagineBot, SHARD_COUNT=2) in SimCord,
running the one shard SHARD_IDS names, on the shared PostgreSQL queue (render workers: shared_harness.py).

    python tests/bot/shard_harness.py SHARD PHASE [DIE_AFTER_ACKS]

The world of a shard's gateway is the same in every process (as Discord's is for a restarted gateway):
two servers on that shard, each with a #imagine channel, alice and bob. Phases:
- `jobs`: in each server alice asks twice and bob once (6 jobs); prints `ACK <prompt>` per acknowledged
  command; with DIE_AFTER_ACKS it SIGKILLs itself at that ACK (its jobs stay in the queue, unposted);
- `recover`: no commands, start-up recovery only.
Then it waits (on NOTIFY imagine_done and the rows, bounded) until every job of ITS shard is final and every
done one posted, and prints `MESSAGE <generation id>` per result message in its channels.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

import discord  # noqa: E402
import simcord  # noqa: E402
from shared_harness import _all_final_and_posted, _until, die  # noqa: E402

from bot import presentation  # noqa: E402
from bot.__main__ import configure_logging  # noqa: E402
from bot.app import create_bot  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.sharding import ShardPlan  # noqa: E402
from generation.queue import CallbackWaiter  # noqa: E402
from storage import signals  # noqa: E402

SERVERS_PER_SHARD = 2
ASKS = [("alice", 2), ("bob", 1)]


async def run_sharded_gateway(shard: int, phase: str, die_after: int | None) -> None:
    settings = Settings(_env_file=None)
    assert settings.shard_count == 2 and settings.shard_ids == [shard], (settings.shard_count, settings.shard_ids)
    env_holder: list[simcord.Env] = []

    async def external(awaitable: Any) -> Any:
        return await env_holder[0].external_wait(awaitable, reason="shared queue")

    bot = create_bot(settings, waiter=CallbackWaiter(external))
    assert isinstance(bot, discord.AutoShardedClient)
    env = simcord.Env(bot, settle_timeout=120.0)
    env_holder.append(env)
    acks = [0]
    original_defer = discord.InteractionResponse.defer

    async def defer_then_maybe_die(self: Any, *args: Any, **kwargs: Any) -> Any:
        outcome = await original_defer(self, *args, **kwargs)
        print(f"ACK {self._parent.namespace.prompt}", flush=True)
        acks[0] += 1
        if die_after is not None and acks[0] >= die_after:
            die()
        return outcome

    discord.InteractionResponse.defer = defer_then_maybe_die  # type: ignore[method-assign]
    servers = []
    for number in range(SERVERS_PER_SHARD):
        guild = env.create_guild(f"server {number} of shard {shard}", shard_id=shard)
        channel = guild.create_text_channel("imagine")
        members = {name: guild.add_member(env.create_user(name)) for name, _ in ASKS}
        servers.append((guild, channel, members))
    await env.start()
    print(f"SHARDS {sorted(bot.shards)}", flush=True)  # what discord.py's AutoShardedClient runs here
    store = bot.store
    done = asyncio.Event()
    queue: Any = bot.queue
    handle = queue._listener.callback

    def spy(channel: str, payload: str) -> None:
        handle(channel, payload)
        if channel in (signals.DONE, signals.PROGRESS):
            done.set()

    queue._listener.callback = spy
    if phase == "jobs":
        for number, (guild, channel, members) in enumerate(servers):
            for who, count in ASKS:
                for index in range(count):
                    await members[who].slash(channel, "imagine", prompt=f"shard {shard} server {number} {who} {index}",
                                             seed=index + 1)
    plan = ShardPlan.from_settings(settings)
    await _until(env, done, store, lambda records: _all_final_and_posted([r for r in records if plan.owns(r)]))
    for _, channel, _ in servers:
        for message in channel.history():
            for generation_id in presentation.message_generation_ids(message):
                print(f"MESSAGE {generation_id}", flush=True)
    await env.shutdown()
    await bot.close_resources()


if __name__ == "__main__":
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    for noisy in ("discord", "simcord", "alembic", "sqlalchemy"):
        __import__("logging").getLogger(noisy).setLevel("WARNING")
    when = sys.argv[3] if len(sys.argv) > 3 else None
    asyncio.run(run_sharded_gateway(int(sys.argv[1]), sys.argv[2], int(when) if when else None))
