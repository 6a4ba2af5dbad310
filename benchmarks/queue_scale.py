"""Benchmark: the PostgreSQL shared queue at scale, through the real claim code (storage/claims.py).

    .venv/bin/python benchmarks/queue_scale.py [--levels 100 1000 10000] [--owners 1000] [--workers 8]
                                               [--claims 2000] [--history 0] [--url postgresql+asyncpg://...]

A throwaway PostgreSQL (tests/postgres_server.py, from the machine's binaries) unless --url is given. For each
queue depth: a fresh database with that many queued jobs spread over the owners (at most --owners, 10 jobs
each by default), then
  1. one worker alone claims and finishes: the claim's own latency (no waiting on other workers);
  2. --workers workers claim, finish with a zero-cost render (no images) and queue a replacement job for a
     random owner, so the depth stays put: claims/s and claim latency p50/p99 as a worker sees it (with
     waiting for the claim lock the workers take turns on);
  3. the EXPLAIN (ANALYZE, BUFFERS) plan of every SELECT one claim runs, captured from the real code.
Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from storage import Store  # noqa: E402
from storage.models import Generation, User  # noqa: E402

MODEL = "tinyshapes"
LEASE_S = 600.0
FIRST_OWNER = 400_000_000_000_000_000  # real-sized snowflakes


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def params(rng: random.Random) -> dict[str, Any]:
    return {"prompt": "a red circle on a blue square", "negative_prompt": None, "width": 64, "height": 64,
            "num_inference_steps": 20, "guidance_scale": 5.0, "seed": rng.randrange(2**32), "sampler": "DPM++ 2M",
            "count": 1, "strength": 0.75, "variation_seed": None, "variation_strength": 0.0, "model": MODEL}


async def fill(store: Store, queued: int, owners: int, history: int, rng: random.Random) -> list[int]:
    """`queued` queued jobs round the owners (interleaved, as traffic would), after `history` done ones."""
    owner_ids = [FIRST_OWNER + n for n in range(owners)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for n in range(history + queued):
        done = n < history
        when = start + timedelta(seconds=n)
        rows.append({"owner_id": rng.choice(owner_ids), "guild_id": 1, "channel_id": 2, "kind": "imagine",
                     "status": "done" if done else "queued", "attempts": 1 if done else 0, "created_at": when,
                     "started_at": when if done else None, "finished_at": when if done else None,
                     "message_id": 10**17 + n if done else None, **params(rng)})
    async with store.engine.begin() as connection:
        await connection.execute(insert(User), [{"id": owner, "settings": {}, "created_at": start}
                                                for owner in owner_ids])
        for offset in range(0, len(rows), 5000):
            await connection.execute(insert(Generation), rows[offset:offset + 5000])
        await connection.exec_driver_sql("ANALYZE")
    return owner_ids


async def claim_one(store: Store, worker: str) -> tuple[float, int | None]:
    began = time.perf_counter()
    claimed, _ = await store.claim(worker, models=[MODEL], max_size=1024, loaded_model=MODEL, lease_s=LEASE_S)
    return time.perf_counter() - began, claimed[0].id if claimed else None


async def alone(store: Store, claims: int) -> list[float]:
    latencies = []
    for _ in range(claims):
        seconds, job = await claim_one(store, "alone")
        if job is None:
            break
        latencies.append(seconds)
        await store.mark_done(job, [], 0.0, worker_id="alone")
    return latencies


async def together(store: Store, workers: int, claims: int, owner_ids: list[int],
                   rng: random.Random) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = [claims]

    async def worker(name: str) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            seconds, job = await claim_one(store, name)
            if job is None:
                return
            latencies.append(seconds)
            await store.mark_done(job, [], 0.0, worker_id=name)  # a zero-cost render
            await store.create_generation(owner_id=rng.choice(owner_ids), guild_id=1, channel_id=2,
                                          kind="imagine", parent_id=None, params=params(rng))

    began = time.perf_counter()
    await asyncio.gather(*(worker(f"worker-{n}") for n in range(workers)))
    return latencies, time.perf_counter() - began


@contextmanager
def capture_statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)


async def claim_plans(store: Store) -> list[tuple[str, float]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each SELECT that one real claim runs on the queue's tables, replayed in a
    transaction that is rolled back: (plan, its execution time in ms)."""
    with capture_statements(store) as seen:
        _, job = await claim_one(store, "explain")
    if job is not None:
        await store.mark_done(job, [], 0.0, worker_id="explain")
    plans = []
    async with store.engine.connect() as connection:
        transaction = await connection.begin()
        for statement, parameters in seen:
            words = statement.lstrip(" (\n").upper()
            if words.startswith("SELECT") and ("generations" in statement or "owner_turns" in statement):
                result = await connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
                plan = "\n".join(str(row[0]) for row in result)
                executed = [line for line in plan.splitlines() if line.startswith("Execution Time:")]
                plans.append((plan, float(executed[0].split()[2]) if executed else 0.0))
        await transaction.rollback()
    return plans


async def level(url: str, data_dir: Path, queued: int, args: argparse.Namespace) -> dict[str, Any]:
    from postgres_server import fresh_database  # type: ignore[import-not-found]  # tests/ is on sys.path

    rng = random.Random(queued)
    owners = max(1, min(args.owners, queued // 10))
    async with fresh_database(url) as database:
        store = await Store.open(database, data_dir / str(queued))
        try:
            owner_ids = await fill(store, queued, owners, args.history, rng)
            lone = await alone(store, min(args.alone, queued // 2))
            # put the depth back to `queued` after the lone worker's claims
            for _ in range(len(lone)):
                await store.create_generation(owner_id=rng.choice(owner_ids), guild_id=1, channel_id=2,
                                              kind="imagine", parent_id=None, params=params(rng))
            latencies, wall = await together(store, args.workers, args.claims, owner_ids, rng)
            plans = await claim_plans(store)
        finally:
            await store.close()
    return {"queued": queued, "owners": owners, "lone_p50": percentile(lone, 0.5), "lone_p99": percentile(lone, 0.99),
            "claims": len(latencies), "claims_per_s": len(latencies) / wall, "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99), "mean": statistics.fmean(latencies), "plans": plans,
            "query_ms": sum(ms for _, ms in plans)}


async def main(args: argparse.Namespace) -> None:
    import postgres_server

    server = None
    url = args.url
    if url is None:
        server = postgres_server.start()
        url = server.url
    try:
        with tempfile.TemporaryDirectory(prefix="queue-scale-") as folder:
            results = [await level(url, Path(folder), queued, args) for queued in args.levels]
    finally:
        if server is not None:
            server.stop()
    print(f"shared queue, {args.workers} workers, zero-cost renders, {args.history} done jobs of history")
    print(f"{'queued':>7} {'owners':>6} | {'alone p50':>9} {'alone p99':>9} | {'claims':>6} {'claims/s':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7} | {'SQL ms':>6}")
    for result in results:
        print(f"{result['queued']:>7} {result['owners']:>6} | {result['lone_p50'] * 1000:>8.2f}  "
              f"{result['lone_p99'] * 1000:>8.2f}  | {result['claims']:>6} {result['claims_per_s']:>8.0f} "
              f"{result['p50'] * 1000:>7.2f} {result['p99'] * 1000:>7.2f} | {result['query_ms']:>6.2f}")
    print("(alone: one worker, ms; claims/p50/p99: all workers together, a claim's latency as a worker sees it,"
          " waiting for the claim lock included; SQL ms: server execution time of a claim's SELECTs)")
    for plan, _ in results[-1]["plans"]:
        print(f"\nplan of a claim's SELECT at {results[-1]['queued']} queued:\n{plan}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--claims", type=int, default=2000, help="claims by the workers together, per level")
    parser.add_argument("--alone", type=int, default=200, help="claims by one worker alone, per level")
    parser.add_argument("--history", type=int, default=0, help="done jobs in the table besides the queue")
    parser.add_argument("--url", help="an admin URL of an existing server (a database is created and dropped)")
    asyncio.run(main(parser.parse_args()))
