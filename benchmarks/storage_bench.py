"""Benchmark: /history and lineage on a user with 100k generations.

    python -m benchmarks.storage_bench [--rows 100000] [--samples 300] [--url URL] [--data-dir DIR]

Fills a fresh database (a temporary SQLite file by default) through the real schema, then
times the Store calls the bot makes and prints p50/p99 per query. Not a test: it only reports.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

from storage.models import Generation, Image, User
from storage.store import Store

OWNER = 123_456_789_012_345_678
WORDS = "red blue green cat dog castle forest night neon portrait city river moon robot tree".split()
LINEAGE_DEPTH = 20  # variations of variations: a long-lived remix chain


async def fill(store: Store, rows: int, others: int) -> tuple[int, int]:
    """Insert `rows` generations (2 images each) for OWNER, `others` for other users, and one
    lineage chain; returns (id of the deepest link of the chain, its children count)."""
    rng = random.Random(7)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    total = rows + others
    owners = [OWNER] * rows + [OWNER + 1 + n % 50 for n in range(others)]
    rng.shuffle(owners)  # interleave users as real traffic would
    async with store.engine.begin() as connection:
        await connection.execute(
            insert(User), [{"id": owner, "settings": {}, "created_at": start} for owner in set(owners)]
        )
        batch = 10_000
        for offset in range(0, total, batch):
            generations, images = [], []
            for n in range(offset, min(offset + batch, total)):
                gen_id = n + 1
                when = start + timedelta(seconds=n * 5)
                generations.append({
                    "id": gen_id, "owner_id": owners[n], "guild_id": 1, "channel_id": 2,
                    "kind": "imagine", "parent_id": None, "status": "done", "attempts": 1,
                    "prompt": " ".join(rng.choices(WORDS, k=6)), "negative_prompt": "blurry",
                    "width": 64, "height": 64, "num_inference_steps": 20, "guidance_scale": 5.0,
                    "seed": n, "sampler": "DPM++ 2M", "count": 2, "strength": 0.75,
                    "variation_seed": None, "variation_strength": 0.0, "model": "tinyshapes",
                    "created_at": when, "started_at": when, "finished_at": when, "duration_s": 1.0,
                    "message_id": 10**17 + gen_id, "message_channel_id": 2, "delivered_at": when,
                })
                for index in range(2):
                    images.append({
                        "generation_id": gen_id, "index": index, "seed": n + index,
                        "variation_seed": None, "variation_strength": 0.0, "width": 64, "height": 64,
                        "path": f"images/{gen_id // 1000}/{gen_id}-{index}.png", "sha256": "0" * 64,
                    })
            await connection.execute(insert(Generation), generations)
            await connection.execute(insert(Image), images)
        # A chain root <- v1 <- ... <- v20 among OWNER's rows, with 5 children under the last link.
        mine = [i + 1 for i, owner in enumerate(owners) if owner == OWNER]
        chain = sorted(rng.sample(mine, LINEAGE_DEPTH + 6))
        links, children = chain[: LINEAGE_DEPTH + 1], chain[LINEAGE_DEPTH + 1:]
        for parent, child in zip(links, links[1:]):
            await connection.execute(
                text("UPDATE generations SET parent_id = :p, kind = 'variation' WHERE id = :c"),
                {"p": parent, "c": child},
            )
        for child in children:
            await connection.execute(
                text("UPDATE generations SET parent_id = :p, kind = 'reroll' WHERE id = :c"),
                {"p": links[-1], "c": child},
            )
        if store.engine.dialect.name == "sqlite":
            await connection.exec_driver_sql("ANALYZE")
    if store.engine.dialect.name == "sqlite":
        # Fold the bulk load's WAL into the database file, as the idle bot's checkpoints would.
        async with store.engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    if store.engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk load; index-only scans need the visibility map.
        async with store.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("users", "generations", "images"):
                await connection.exec_driver_sql(f"VACUUM ANALYZE {table}")
    return links[-1], len(children)


async def timed(samples: int, call: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    for n in range(min(50, samples)):  # warm the pool, caches and statement cache
        await call(n)
    durations = []
    for n in range(samples):
        started = time.perf_counter()
        await call(n)
        durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    return statistics.median(durations), durations[min(len(durations) - 1, int(len(durations) * 0.99))]


async def main(rows: int, samples: int, url: str | None, data_dir: Path) -> None:
    store = await Store.open(url, data_dir)
    try:
        started = time.perf_counter()
        leaf, child_count = await fill(store, rows, others=rows // 5)
        print(f"filled {rows} generations for one user (+{rows // 5} for 50 others, 2 images each) "
              f"in {time.perf_counter() - started:.1f}s on {store.engine.dialect.name}")
        rng = random.Random(1)
        async with store.engine.connect() as connection:
            ids = list((await connection.execute(
                text("SELECT id FROM generations WHERE owner_id = :o ORDER BY id DESC"), {"o": OWNER}
            )).scalars())
        assert len(ids) == rows, len(ids)

        async def first_page(_: int) -> None:
            assert len(await store.history(OWNER, limit=10)) == 10

        async def deep_page(_: int) -> None:
            assert len(await store.history(OWNER, before_id=rng.choice(ids[100:-20]), limit=10)) == 10

        async def search_page(n: int) -> None:
            await store.history(OWNER, limit=10, query=WORDS[n % len(WORDS)])

        async def rare_search(_: int) -> None:
            await store.history(OWNER, limit=10, query="no such words anywhere")

        async def count(_: int) -> None:
            await store.count_history(OWNER)

        async def lineage(_: int) -> None:
            result = await store.lineage(leaf)
            assert len(result.ancestors) == LINEAGE_DEPTH and len(result.children) == child_count

        async def by_message(n: int) -> None:
            assert await store.get_by_message(10**17 + ids[n % len(ids)]) is not None

        print(f"{'query (Store call, includes session + images)':<52}{'p50 ms':>9}{'p99 ms':>9}")
        for name, call, n in [
            ("history page 1 (10 rows)", first_page, samples),
            ("history page at a random depth (keyset)", deep_page, samples),
            ("history page 1, text filter (common word)", search_page, samples),
            ("history, text filter matching nothing (full scan)", rare_search, max(10, samples // 10)),
            ("count_history (for 'page 1/N')", count, max(10, samples // 10)),
            (f"lineage ({LINEAGE_DEPTH} ancestors + {child_count} children)", lineage, samples),
            ("get_by_message", by_message, samples),
        ]:
            p50, p99 = await timed(n, call)
            print(f"{name:<52}{p50:>9.2f}{p99:>9.2f}")
    finally:
        await store.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a temporary folder)")
    args = parser.parse_args()
    if args.data_dir:
        asyncio.run(main(args.rows, args.samples, args.url, args.data_dir))
        return
    with tempfile.TemporaryDirectory(prefix="imagine-bench-") as tmp:
        asyncio.run(main(args.rows, args.samples, args.url, Path(tmp)))


if __name__ == "__main__":
    cli()
