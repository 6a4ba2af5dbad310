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

from harness_common import (all_final_and_posted, bot_in_simcord, close, imagine_channel, notifications_handled,
                            print_acknowledgements, print_posted, quiet_libraries, wait_until)
import discord

from bot.__main__ import configure_logging
from bot.settings import Settings
from bot.sharding import ShardPlan

SERVERS_PER_SHARD = 2
ASKS = [("alice", 2), ("bob", 1)]


async def run_sharded_gateway(shard: int, phase: str, die_after: int | None) -> None:
    settings = Settings(_env_file=None)
    assert settings.shard_count == 2 and settings.shard_ids == [shard], (settings.shard_count, settings.shard_ids)
    bot, env = bot_in_simcord(settings, "shared queue")
    assert isinstance(bot, discord.AutoShardedClient)
    print_acknowledgements(kill_at_ack=die_after)
    servers = [imagine_channel(env, [name for name, _ in ASKS], f"server {number} of shard {shard}", shard_id=shard)
               for number in range(SERVERS_PER_SHARD)]
    await env.start()
    print(f"SHARDS {sorted(bot.shards)}", flush=True)  # what discord.py's AutoShardedClient runs here
    store = bot.store
    done = notifications_handled(bot)
    if phase == "jobs":
        for number, (channel, members) in enumerate(servers):
            for who, count in ASKS:
                for index in range(count):
                    await members[who].slash(channel, "imagine", prompt=f"shard {shard} server {number} {who} {index}",
                                             seed=index + 1)
    plan = ShardPlan.from_settings(settings)
    await wait_until(env, done, store, lambda records: all_final_and_posted([r for r in records if plan.owns(r)]))
    print_posted(channel for channel, _ in servers)
    await close(env, bot)


if __name__ == "__main__":
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    quiet_libraries()
    when = sys.argv[3] if len(sys.argv) > 3 else None
    asyncio.run(run_sharded_gateway(int(sys.argv[1]), sys.argv[2], int(when) if when else None))
