"""Benchmark (not a test): images/s of one burst through the shared queue with 1 and with 2 worker processes.

    .venv/bin/python -m benchmarks.shared_queue_bench [--jobs 24] [--steps 20] [--url postgresql+asyncpg://...]

Starts a throwaway PostgreSQL (tests/postgres_server.py) unless --url names one, then for each worker count:
a fresh database, N `python -m generation.worker` processes (CPU, 1 torch thread each, model loaded before timing),
one burst of --jobs single-image /imagine-like jobs from 3 owners queued at once, and the time from the burst's
NOTIFY to the last job done (on the database's clock). Prints images/s and the scaling efficiency
(images/s with 2 workers / (2 x images/s with 1)).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import postgres_server  # type: ignore[import-not-found]  # noqa: E402 - tests/ is on sys.path above

from storage import GenerationStatus, Store, signals  # noqa: E402


async def one_run(admin_url: str, workers: int, jobs: int, steps: int, data_dir: Path) -> float:
    async with postgres_server.fresh_database(admin_url) as url:
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(data_dir), "DEVICE": "cpu", "DTYPE": "float32",
               "CPU_THREADS": "1", "OMP_NUM_THREADS": "1", "LEASE_S": "30", "QUEUE_POLL_S": "1",
               "LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
        store = await Store.open(url, data_dir)
        processes = [subprocess.Popen([sys.executable, "-m", "generation.worker"], cwd=REPO, env={**env, "WORKER_ID": f"w{n}"},
                                      stdout=subprocess.PIPE, text=True) for n in range(workers)]
        try:
            for process in processes:  # "worker … ready": model loaded
                assert process.stdout is not None
                line = process.stdout.readline()
                assert "ready" in line, line
            ids = []
            for index in range(jobs):
                record = await store.create_generation(
                    owner_id=1000 + index % 3, guild_id=None, channel_id=None, kind="imagine", parent_id=None,
                    params={"prompt": f"a red circle {index}", "width": 64, "height": 64, "num_inference_steps": steps,
                            "guidance_scale": 5.0, "seed": index, "sampler": "DPM++ 2M", "count": 1,
                            "model": "tinyshapes", "variation_strength": 0.0, "negative_prompt": ""})
                ids.append(record.id)
            done = asyncio.Event()
            listener = signals.Listener(url, [signals.DONE], lambda *_: done.set())
            await listener.start()
            start = await store.database_now()
            await store.notify(signals.WORK, "tinyshapes")
            while True:
                records = [await store.get(generation_id) for generation_id in ids]
                if all(record is not None and record.status is GenerationStatus.DONE for record in records):
                    break
                done.clear()
                try:
                    await asyncio.wait_for(done.wait(), 5)
                except TimeoutError:
                    pass
            await listener.close()
            end = max(record.finished_at for record in records if record is not None and record.finished_at)
            return jobs / (end - start).total_seconds()
        finally:
            for process in processes:
                process.terminate()
                process.wait()
            await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--url", help="an admin URL of a PostgreSQL server (default: a throwaway one)")
    args = parser.parse_args()
    server = None
    admin_url = args.url
    if admin_url is None:
        server = postgres_server.start()
        admin_url = server.url
    import tempfile

    try:
        rates = {}
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as folder:
                rates[workers] = await one_run(admin_url, workers, args.jobs, args.steps, Path(folder))
            print(f"{workers} worker(s): {rates[workers]:.2f} images/s ({args.jobs} images, 64x64, {args.steps} steps)",
                  flush=True)
        print(f"scaling efficiency with 2 workers: {rates[2] / (2 * rates[1]):.0%} (speed-up {rates[2] / rates[1]:.2f}x); "
              f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
