"""`python -m generation.workers`: the render workers of the shared queue, for operators.

One line per worker: id, host, state (rendering / idle / silent: no heartbeat for longer than a lease /
stopped), models (the loaded one starred), jobs rendering now, jobs and images done, images/s while
rendering, and seconds since its last heartbeat (on the database's clock). Then the queue: jobs queued and
rendering. Reads DATABASE_URL and LEASE_S like the workers (RenderSettings): it runs wherever they do.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from storage import GenerationStatus, Store
from storage.claims import WorkerRecord

from .settings import RenderSettings


def describe(worker: WorkerRecord, now_s: float, lease_s: float) -> str:
    since = now_s - worker.heartbeat_at.timestamp()
    if worker.stopped_at is not None:
        state = "stopped"
    elif since > lease_s:
        state = "silent"
    else:
        state = "rendering" if worker.current_jobs else "idle"
    models = ",".join(f"{model}*" if model == worker.loaded_model else model for model in worker.models)
    current = ",".join(f"#{job}" for job in worker.current_jobs) or "-"
    return (f"{worker.id:<24} {worker.host:<16} {state:<9} {models:<28} {current:<10} {worker.jobs_done:>6} "
            f"{worker.images_done:>7} {worker.images_per_s:>8.2f} {since:>8.1f}")


HEADER = (f"{'worker':<24} {'host':<16} {'state':<9} {'models (* loaded)':<28} {'now':<10} {'jobs':>6} "
          f"{'images':>7} {'images/s':>8} {'beat s':>8}")


async def report(url: str) -> str:
    store = await Store.open(url)
    try:
        if not store.shared:
            return "no shared queue here: DATABASE_URL is not PostgreSQL (the bot renders in its own process)"
        settings_lease = RenderSettings().lease_s
        now_s = (await store.database_now()).timestamp()
        workers = await store.workers()
        queue = await store.shared_queue()
    finally:
        await store.close()
    lines = [HEADER] + [describe(worker, now_s, settings_lease) for worker in workers]
    if not workers:
        lines.append("(no worker has registered yet: start one with python -m generation.worker)")
    rendering = sum(1 for job in queue if job.status is GenerationStatus.RUNNING)
    lines.append(f"queue: {rendering} rendering, {len(queue) - rendering} waiting")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generation.workers", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: DATABASE_URL from the environment or .env)")
    args = parser.parse_args(argv)
    url = args.url or RenderSettings().resolved_database_url
    print(asyncio.run(report(url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
