"""Processes for the shared-queue tests: a gateway (the real bot in SimCord, SHARED_QUEUE=true, LOCAL_WORKER=false)
and render workers (generation.queue.worker.RenderWorker, as `python -m generation.worker` runs it), on one
PostgreSQL database.

    python tests/bot/shared_harness.py gateway PHASE EVENTS_LOG [DIE_AFTER_ACKS]
    python tests/bot/shared_harness.py worker EVENTS_LOG WORKER_ID

Settings come from the environment (DATABASE_URL, SHARED_QUEUE, LEASE_S, QUEUE_POLL_S, DATA_DIR, ...).
Gateway phases (the SimCord world has the same ids in every process, as Discord has for a restarted bot):
- `burst`: 20 /imagine from alice (8), bob (7) and carol (5), in that order; prints `ACK <prompt>` per
  acknowledged command and `BURST IN` after the last; with DIE_AFTER_ACKS it SIGKILLs itself at that ACK;
- `small`: six /imagine (alice, bob, carol twice each); `small-doomed`: the same, bob's first one "doomed";
- `cancel`: one slow /imagine by alice; once its progress arrives (it is rendering), alice clicks Cancel;
- `recover`: no commands: start-up recovery only.
Every phase then waits (on NOTIFY imagine_done and the rows, bounded) until every job is final and every done one
posted, and prints `MESSAGE <generation id>` per result message in the channel.

A worker batches as by default (BATCH_IMAGES=auto), its probe timed by tests/bot/batch_cost_model.py. It appends
to EVENTS_LOG: `PROBE <worker> limit=<n>` (the probe's outcome), `BATCH <worker> <prompt>|<prompt>…` per pipeline
call, `FINISH <worker> <prompt>` per completed render, `STEP <worker> <prompt> <n>` per step of a "slow" prompt,
`STOPPED <worker> <prompt>` when a render stopped on a cancel. It SIGKILLs itself at step 2 of the first render
anywhere of a prompt containing "doomed" (a marker file makes it the first only); at step 2 of a "slow" prompt it
waits (bounded) until that job's row is cancelled (the user clicks Cancel then). With HOLD_LOCK=<key> in its
environment, its first call waits at step 2 until it can take that PostgreSQL advisory lock (the test holds it
until the gateway is dead), between `HOLD <worker> <prompts>` and `RESUME <worker> <prompts>`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import Any

from harness_common import (HANG_GUARD_S, SETTLE_S, HarnessRenderer, all_final_and_posted, append, bot_in_simcord,
                            close, die, imagine_channel, notifications_handled, print_acknowledgements,
                            print_posted, quiet_libraries, wait_until)

from bot.__main__ import configure_logging
from bot.settings import Settings
from generation.queue.assembly import build_finisher, build_service, worker_config
from generation.queue.worker import RenderWorker
from storage import Store, signals

BURST = [("alice", 8), ("bob", 7), ("carol", 5)]
SMALL = [("alice", 2), ("bob", 2), ("carol", 2)]


# ------------------------------------------------------------------------------------------ worker


class WorkerRenderer(HarnessRenderer):
    def __init__(self, renderer: Any, events: Path, worker_id: str, url: str, hold_lock: int | None) -> None:
        super().__init__(renderer, events, f"PROBE {worker_id}")
        self._worker_id = worker_id
        self._url = url
        self._hold_lock = hold_lock  # the first call waits for this advisory lock at step 2

    def render_batch(self, requests: list[Any], *, on_progress: Any = None, is_cancelled: Any = None,
                     **options: Any) -> Any:
        """The production batch path, with the harness's events around it: BATCH (the jobs sharing the
        call), STEP, a kill at step 2 of a doomed job, FINISH or STOPPED."""
        prompts = [request.prompt for request in requests]
        doomed = ["doomed" in prompt and _first_time(self._log_path.with_name(f"marker-{prompt.replace(' ', '_')}"))
                  for prompt in prompts]
        slow = ["slow" in prompt for prompt in prompts]
        self.log(f"BATCH {self._worker_id} {'|'.join(prompts)}")
        hold, self._hold_lock = self._hold_lock, None

        def progress(index: int, event: Any) -> None:
            nonlocal hold
            prompt = prompts[index]
            if hold is not None and event.step == 2:
                self.log(f"HOLD {self._worker_id} {'|'.join(prompts)}")
                asyncio.run(_wait_for_lock(self._url, hold))
                self.log(f"RESUME {self._worker_id} {'|'.join(prompts)}")
                hold = None
            if slow[index]:
                self.log(f"STEP {self._worker_id} {prompt} {event.step}")
            if doomed[index] and event.step >= 2:
                self.log(f"KILL {self._worker_id} {'|'.join(prompts)}")
                die()
            if slow[index] and event.step == 2:
                asyncio.run(_wait_until_cancelled(self._url, prompt))
            if on_progress is not None:
                on_progress(index, event)

        try:
            results = self._renderer.render_batch(requests, on_progress=progress, is_cancelled=is_cancelled,
                                                  **options)
        except Exception as error:
            if type(error).__name__ == "RenderCancelled":
                for prompt in prompts:
                    self.log(f"STOPPED {self._worker_id} {prompt}")
            raise
        for prompt in prompts:
            self.log(f"FINISH {self._worker_id} {prompt}")
        return results


def _first_time(marker: Path) -> bool:
    try:
        marker.touch(exist_ok=False)
        return True
    except FileExistsError:
        return False


async def _wait_until_cancelled(url: str, prompt: str) -> None:
    """In the render thread: hold step 2 until the job's row is cancelled (LISTEN, then the row; bounded)."""
    import asyncpg

    connection = await asyncpg.connect(signals.driver_dsn(url))
    try:
        heard = asyncio.Event()
        await connection.add_listener(signals.CANCEL, lambda *_: heard.set())
        status = await connection.fetchval("SELECT status FROM generations WHERE prompt = $1", prompt)
        if status != "cancelled":
            await asyncio.wait_for(heard.wait(), HANG_GUARD_S)
    finally:
        await connection.close()


async def _wait_for_lock(url: str, key: int) -> None:
    """In the render thread: wait (bounded) until advisory lock `key` is free, then let it go."""
    import asyncpg

    connection = await asyncpg.connect(signals.driver_dsn(url))
    try:
        await asyncio.wait_for(connection.execute("SELECT pg_advisory_lock($1)", key), HANG_GUARD_S)
        await connection.execute("SELECT pg_advisory_unlock($1)", key)
    finally:
        await connection.close()


async def run_worker(events: Path, worker_id: str) -> None:
    settings = Settings(_env_file=None)
    store = await Store.open(settings.resolved_database_url, settings.data_dir, image_store=settings.image_store)
    service = build_service(settings)
    hold_lock = int(os.environ["HOLD_LOCK"]) if os.environ.get("HOLD_LOCK") else None
    service.renderer = WorkerRenderer(service.renderer, events, worker_id, settings.resolved_database_url, hold_lock)
    await service.start()
    config = dataclasses.replace(worker_config(settings), worker_id=worker_id)
    worker = RenderWorker(store, service, build_finisher(settings, service), config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await worker.start()
    print(f"WORKER {worker_id} READY", flush=True)
    await stop.wait()
    await worker.close()
    await service.close()
    await store.close()


# ------------------------------------------------------------------------------------------ gateway


async def run_gateway(phase: str, events: Path, die_after: int | None, die_when_rendering: bool = False) -> None:
    """`die_after` acknowledgements, or (`die_when_rendering`) at the first progress a worker reports."""
    settings = Settings(_env_file=None)
    bot, env = bot_in_simcord(settings, "shared queue")
    print_acknowledgements(kill_at_ack=die_after)
    channel, members = imagine_channel(env, ("alice", "bob", "carol"))
    await env.start()
    store: Store = bot.store
    rendering = asyncio.Event()  # a progress notification came: some job is past its first step

    def on_notification(topic: str, payload: str) -> None:
        if topic == signals.PROGRESS:
            rendering.set()
            if die_when_rendering:
                append(events, f"GATEWAY KILLED while rendering {payload}")
                die()

    done = notifications_handled(bot, then=on_notification)
    if phase in ("burst", "small", "small-doomed"):
        for who, count in (BURST if phase == "burst" else SMALL):
            for index in range(count):
                doomed = phase == "small-doomed" and who == "bob" and index == 0
                # "circle": a word the shipped model reads (a prompt of names and digits only is refused).
                prompt = f"{who} doomed {index}" if doomed else f"{who} {index} circle"
                await members[who].slash(channel, "imagine", prompt=prompt, seed=index + 1)
        print("BURST IN", flush=True)
    elif phase == "cancel":
        result = await members["alice"].slash(channel, "imagine", prompt="a slow square", seed=7)
        await asyncio.wait_for(rendering.wait(), HANG_GUARD_S)  # the worker holds step 2 until the cancel
        await env.settle(timeout=SETTLE_S)
        clicked = await members["alice"].click(result.response, label="Cancel")
        print(f"CLICKED {clicked.response.content}", flush=True)
    await wait_until(env, done, store, all_final_and_posted)
    print_posted([channel])
    await close(env, bot)


if __name__ == "__main__":
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    quiet_libraries()
    role = sys.argv[1]
    if role == "worker":
        asyncio.run(run_worker(Path(sys.argv[2]), sys.argv[3]))
    else:
        when = sys.argv[4] if len(sys.argv) > 4 else None
        asyncio.run(run_gateway(sys.argv[2], Path(sys.argv[3]), int(when) if when and when.isdigit() else None,
                                die_when_rendering=when == "rendering"))
