"""Processes for the shared-queue tests: a gateway (the real bot in SimCord, SHARED_QUEUE=true, LOCAL_WORKER=false)
and render workers (bot.shared_queue.RenderWorker, as `python -m generation.worker` runs it), on one PostgreSQL database.

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

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import discord  # noqa: E402
import simcord  # noqa: E402

from batch_cost_model import modelled_probe  # noqa: E402
from bot import presentation  # noqa: E402
from bot.__main__ import configure_logging  # noqa: E402
from bot.app import create_bot  # noqa: E402
from generation.queue.assembly import build_finisher, build_service, worker_config  # noqa: E402
from bot.settings import Settings  # noqa: E402
from generation.queue import CallbackWaiter  # noqa: E402
from generation.queue.worker import RenderWorker  # noqa: E402
from storage import GenerationStatus, Store, signals  # noqa: E402

HANG_GUARD_S = 300.0
SETTLE_S = 15.0
RECHECK_S = 1.0
BURST = [("alice", 8), ("bob", 7), ("carol", 5)]
SMALL = [("alice", 2), ("bob", 2), ("carol", 2)]


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def append(path: Path, line: str) -> None:
    with path.open("a") as handle:  # one write per line (O_APPEND): lines of two processes never interleave
        handle.write(line + "\n")


# ------------------------------------------------------------------------------------------ worker


class HarnessRenderer:
    def __init__(self, renderer: Any, events: Path, worker_id: str, url: str, hold_lock: int | None) -> None:
        self._renderer = renderer
        self._events = events
        self._worker_id = worker_id
        self._url = url
        self._hold_lock = hold_lock  # the first call waits for this advisory lock at step 2

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)

    def probe_batch_images(self, model: str) -> dict[int, float]:
        return modelled_probe(self._renderer, model,
                              lambda line: append(self._events, f"PROBE {self._worker_id} {line}"))

    def render_batch(self, requests: list[Any], *, on_progress: Any = None, is_cancelled: Any = None,
                     **options: Any) -> Any:
        """The production batch path, with the harness's events around it: BATCH (the jobs sharing the
        call), STEP, a kill at step 2 of a doomed job, FINISH or STOPPED."""
        prompts = [request.prompt for request in requests]
        doomed = ["doomed" in prompt and _first_time(self._events.with_name(f"marker-{prompt.replace(' ', '_')}"))
                  for prompt in prompts]
        slow = ["slow" in prompt for prompt in prompts]
        append(self._events, f"BATCH {self._worker_id} {'|'.join(prompts)}")
        hold, self._hold_lock = self._hold_lock, None

        def progress(index: int, event: Any) -> None:
            nonlocal hold
            prompt = prompts[index]
            if hold is not None and event.step == 2:
                append(self._events, f"HOLD {self._worker_id} {'|'.join(prompts)}")
                asyncio.run(_wait_for_lock(self._url, hold))
                append(self._events, f"RESUME {self._worker_id} {'|'.join(prompts)}")
                hold = None
            if slow[index]:
                append(self._events, f"STEP {self._worker_id} {prompt} {event.step}")
            if doomed[index] and event.step >= 2:
                append(self._events, f"KILL {self._worker_id} {'|'.join(prompts)}")
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
                    append(self._events, f"STOPPED {self._worker_id} {prompt}")
            raise
        for prompt in prompts:
            append(self._events, f"FINISH {self._worker_id} {prompt}")
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
    service.renderer = HarnessRenderer(service.renderer, events, worker_id, settings.resolved_database_url, hold_lock)
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
    env_holder: list[simcord.Env] = []

    async def external(awaitable: Any) -> Any:
        return await env_holder[0].external_wait(awaitable, reason="shared queue")

    bot = create_bot(settings, waiter=CallbackWaiter(external))
    env = simcord.Env(bot, settle_timeout=120.0)
    env_holder.append(env)
    acks = [0]
    original_defer = discord.InteractionResponse.defer

    async def defer_then_maybe_die(self: Any, *args: Any, **kwargs: Any) -> Any:
        outcome = await original_defer(self, *args, **kwargs)
        prompt = getattr(self._parent.namespace, "prompt", None)
        if prompt is not None:
            print(f"ACK {prompt}", flush=True)
            acks[0] += 1
            if die_after is not None and acks[0] >= die_after:
                die()
        return outcome

    discord.InteractionResponse.defer = defer_then_maybe_die  # type: ignore[method-assign]
    guild = env.create_guild("Imagine Test")
    channel = guild.create_text_channel("imagine")
    members = {name: guild.add_member(env.create_user(name)) for name in ("alice", "bob", "carol")}
    await env.start()
    store: Store = bot.store
    # Woken right after the bot's own listener has handled a notification (its follower is runnable then,
    # so settling waits for whatever the bot does about it).
    done = asyncio.Event()
    rendering = asyncio.Event()  # a progress notification came: some job is past its first step
    service: Any = bot.queue
    handle = service._listener.callback

    def spy(channel: str, payload: str) -> None:
        handle(channel, payload)
        if channel in (signals.DONE, signals.PROGRESS):
            done.set()
        if channel == signals.PROGRESS:
            rendering.set()
            if die_when_rendering:
                append(events, f"GATEWAY KILLED while rendering {payload}")
                die()

    service._listener.callback = spy
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
    await _until(env, done, store, _all_final_and_posted)
    for message in channel.history():
        for generation_id in presentation.message_generation_ids(message):  # either result layout
            print(f"MESSAGE {generation_id}", flush=True)
    await env.shutdown()
    await bot.close_resources()


def _all_final_and_posted(records: list[Any]) -> bool:
    return all(record.status in (GenerationStatus.DONE, GenerationStatus.FAILED, GenerationStatus.CANCELLED)
               and (record.status is not GenerationStatus.DONE or record.message_id is not None
                    or record.delivery_failure is not None) for record in records)


async def _until(env: simcord.Env, woken: asyncio.Event, store: Store, predicate: Any) -> None:
    """Wait until `predicate(every record)` holds: re-checked after the bot settles, after each NOTIFY
    imagine_done or imagine_progress the bot handled, and every RECHECK_S; HANG_GUARD_S in all."""
    deadline = asyncio.get_running_loop().time() + HANG_GUARD_S
    while True:
        # A short settle timeout: with a long one, settle here was seen to take its whole length.
        await env.settle(timeout=SETTLE_S)
        records = await _records(store)
        if records and predicate(records):
            return
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise TimeoutError(f"gave up waiting: {[(r.id, r.status.value, r.message_id) for r in records]}")
        woken.clear()
        try:  # a delivery ends with no notification of its own: look at the rows again after RECHECK_S
            await asyncio.wait_for(woken.wait(), min(left, RECHECK_S))
        except TimeoutError:
            pass


async def _records(store: Store) -> list[Any]:
    found = []
    generation_id = 1
    while (record := await store.get(generation_id, include_deleted=True)) is not None:
        found.append(record)
        generation_id += 1
    return found


if __name__ == "__main__":
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    for noisy in ("discord", "simcord", "alembic", "sqlalchemy"):
        __import__("logging").getLogger(noisy).setLevel("WARNING")
    role = sys.argv[1]
    if role == "worker":
        asyncio.run(run_worker(Path(sys.argv[2]), sys.argv[3]))
    else:
        when = sys.argv[4] if len(sys.argv) > 4 else None
        asyncio.run(run_gateway(sys.argv[2], Path(sys.argv[3]), int(when) if when and when.isdigit() else None,
                                die_when_rendering=when == "rendering"))
