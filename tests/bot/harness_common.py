"""What the process harnesses share (crash_harness.py, turn_crash_harness.py, shared_harness.py, shard_harness.py):
the real bot in a SimCord world, a renderer wrapper with a log and a kill, the waits until every job is done.

The harnesses run as scripts (their folder is sys.path[0], so `import harness_common` works); importing this
module puts the repository on sys.path too: import it before the product packages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import discord  # noqa: E402
import simcord  # noqa: E402
from batch_cost_model import modelled_probe  # noqa: E402

from bot import presentation  # noqa: E402
from bot.app import ImagineBot, create_bot  # noqa: E402
from bot.settings import Settings  # noqa: E402
from generation.queue import CallbackWaiter  # noqa: E402
from generation.queue.assembly import build_service  # noqa: E402
from storage import GenerationStatus, Store, signals  # noqa: E402

HANG_GUARD_S = 300.0
SETTLE_S = 15.0
RECHECK_S = 1.0
LOCAL_SETTLE_S = 300.0  # a whole local run's renders fit in it


def die() -> None:
    """SIGKILL this process; what it printed is flushed first (the test reads it)."""
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def append(path: Path, line: str) -> None:
    with path.open("a") as handle:  # one write per line (O_APPEND): lines of two processes never interleave
        handle.write(line + "\n")


def quiet_libraries() -> None:
    """The bot's own lines (job states, recovery) stay, for a failing test to show; the libraries' are dropped."""
    for noisy in ("discord", "simcord", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_local_harness(main: Callable[[Path, str, Path], Coroutine[Any, Any, None]]) -> None:
    """`python <harness>.py DATA_DIR PHASE RENDER_LOG`, the bot's own log lines on stderr."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))


# ------------------------------------------------------------------------------------------ renderer


class HarnessRenderer:
    """The real renderer with a harness's log; what a subclass does not override goes to it. Its probe
    (BATCH_IMAGES=auto) is timed by batch_cost_model and logged as `<probe_label> <outcome>`."""

    def __init__(self, renderer: Any, log_path: Path, probe_label: str) -> None:
        self._renderer = renderer
        self._log_path = log_path
        self._probe_label = probe_label

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)

    def log(self, line: str) -> None:
        append(self._log_path, line)

    def probe_batch_images(self, model: str) -> dict[int, float]:
        return modelled_probe(self._renderer, model, lambda line: self.log(f"{self._probe_label} {line}"))


class KillingRenderer(HarnessRenderer):
    """Logs `batch <prompts>` per pipeline call and `rendered seed=<seed> prompt=<prompt>` per finished render;
    the process dies at a doomed job's `kill_step` in a call, after logging `kill_line`."""

    def __init__(self, renderer: Any, log_path: Path) -> None:
        super().__init__(renderer, log_path, "probe")

    def kill_step(self, request: Any) -> int | None:
        """The step at which `request` kills the process, None if it never does."""
        return None

    def kill_line(self, prompts: Sequence[str]) -> str:
        return f"killed in a batch of {len(prompts)}: {' | '.join(prompts)}"

    def render_batch(self, requests: list[Any], *, on_progress: Any = None, **options: Any) -> Any:
        """The production batch path, the kill inside it."""
        prompts = [request.prompt for request in requests]
        kill_at = [self.kill_step(request) for request in requests]
        self.log(f"batch {' | '.join(prompts)}")

        def progress(index: int, event: Any) -> None:
            at = kill_at[index]
            if at is not None and event.step >= at:
                self.log(self.kill_line(prompts))
                die()
            if on_progress is not None:
                on_progress(index, event)

        results = self._renderer.render_batch(requests, on_progress=progress, **options)
        for request in requests:
            self.log(f"rendered seed={request.seed} prompt={request.prompt}")
        return results


# ------------------------------------------------------------------------------------------ bot and world


def bot_in_simcord(settings: Settings, wait_reason: str, service: Any = None) -> tuple[ImagineBot, simcord.Env]:
    """The bot in a fresh SimCord environment; its render-queue waits are outside work (`wait_reason`) there."""
    env_holder: list[simcord.Env] = []

    async def external(awaitable: Any) -> Any:
        return await env_holder[0].external_wait(awaitable, reason=wait_reason)

    bot = create_bot(settings, service=service, waiter=CallbackWaiter(external))
    env = simcord.Env(bot, settle_timeout=120.0)
    env_holder.append(env)
    return bot, env


def print_acknowledgements(kill_at_ack: int | None = None) -> None:
    """Print `ACK <prompt>` once a command with a prompt is deferred (before anything can kill the process);
    with `kill_at_ack`, SIGKILL at that acknowledgement."""
    original_defer = discord.InteractionResponse.defer
    acks = 0

    async def defer_then_maybe_die(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal acks
        outcome = await original_defer(self, *args, **kwargs)
        prompt = getattr(self._parent.namespace, "prompt", None)
        if prompt is not None:
            print(f"ACK {prompt}", flush=True)
            acks += 1
            if kill_at_ack is not None and acks >= kill_at_ack:
                die()
        return outcome

    discord.InteractionResponse.defer = defer_then_maybe_die  # type: ignore[method-assign]


def imagine_channel(env: simcord.Env, member_names: Iterable[str], guild_name: str = "Imagine Test",
                    shard_id: int | None = None) -> tuple[Any, dict[str, Any]]:
    """A guild with an #imagine channel and these members: the same ids in every process (a fresh backend
    with its clock at the same start), as Discord keeps them for a restarted bot. Made before the bot starts."""
    guild = env.create_guild(guild_name, shard_id=shard_id)
    channel = guild.create_text_channel("imagine")
    return channel, {name: guild.add_member(env.create_user(name)) for name in member_names}


async def close(env: simcord.Env, bot: ImagineBot, service: Any = None) -> None:
    await env.shutdown()
    await bot.close_resources()
    if service is not None:
        await service.close()


# ------------------------------------------------------------------------------------------ the local queue


class HeldWorker:
    """The local render worker's wait for work: tells whoever waits for an empty queue, and once woken holds
    the worker until `release` (so that jobs queued meanwhile share its calls)."""

    def __init__(self, held: bool) -> None:
        self._idle = asyncio.Condition()
        self._released = asyncio.Event()
        if not held:
            self._released.set()

    def release(self) -> None:
        self._released.set()

    async def wait_for_work(self, awaitable: Awaitable[Any]) -> Any:
        async with self._idle:  # the worker has nothing to do: tell whoever waits for that
            self._idle.notify_all()
        woken = await awaitable
        await self._released.wait()
        return woken

    async def until_done_and_posted(self, env: simcord.Env, service: Any) -> None:
        await env.settle(timeout=LOCAL_SETTLE_S)
        async with self._idle:  # every queued job rendered (or the process was killed on the way)
            await self._idle.wait_for(lambda: not service.snapshot().entries)
        await env.settle(timeout=LOCAL_SETTLE_S)  # and posted


async def start_local_service(settings: Settings, worker: HeldWorker,
                              wrap: Callable[[Any], HarnessRenderer]) -> Any:
    """The render service of this host process (as in the playground), its renderer wrapped: renders are
    outside work for SimCord (so start-up recovery that renders does not count against its settle window)."""
    service = build_service(settings, CallbackWaiter(worker.wait_for_work))
    service.renderer = wrap(service.renderer)
    await service.start()
    return service


# ------------------------------------------------------------------------------------------ the shared queue


def notifications_handled(bot: ImagineBot, then: Callable[[str, str], None] | None = None) -> asyncio.Event:
    """Set right after the bot's own listener has handled a NOTIFY imagine_done or imagine_progress (its
    follower is runnable then, so settling waits for whatever the bot does about it); `then(channel, payload)`
    after each notification."""
    handled = asyncio.Event()
    queue: Any = bot.queue
    handle = queue._listener.callback

    def spy(channel: str, payload: str) -> None:
        handle(channel, payload)
        if channel in (signals.DONE, signals.PROGRESS):
            handled.set()
        if then is not None:
            then(channel, payload)

    queue._listener.callback = spy
    return handled


def all_final_and_posted(records: list[Any]) -> bool:
    return all(record.status in (GenerationStatus.DONE, GenerationStatus.FAILED, GenerationStatus.CANCELLED)
               and (record.status is not GenerationStatus.DONE or record.message_id is not None
                    or record.delivery_failure is not None) for record in records)


async def wait_until(env: simcord.Env, woken: asyncio.Event, store: Store,
                     predicate: Callable[[list[Any]], bool]) -> None:
    """Wait until `predicate(every record)` holds: re-checked after the bot settles, after each NOTIFY
    imagine_done or imagine_progress the bot handled, and every RECHECK_S; HANG_GUARD_S in all."""
    deadline = asyncio.get_running_loop().time() + HANG_GUARD_S
    while True:
        # A short settle timeout: with a long one, settle here was seen to take its whole length.
        await env.settle(timeout=SETTLE_S)
        records = await stored_records(store)
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


async def stored_records(store: Store) -> list[Any]:
    """Every generation record, in id order (ids start at 1 and have no gaps)."""
    found = []
    generation_id = 1
    while (record := await store.get(generation_id, include_deleted=True)) is not None:
        found.append(record)
        generation_id += 1
    return found


def print_posted(channels: Iterable[Any]) -> None:
    """`MESSAGE <generation id>` per result in these channels' messages (either result layout)."""
    for channel in channels:
        for message in channel.history():
            for generation_id in presentation.message_generation_ids(message):
                print(f"MESSAGE {generation_id}", flush=True)
