"""A bot process for the crash tests: the real bot in SimCord, killed with SIGKILL at chosen moments.

    python tests/bot/crash_harness.py DATA_DIR PHASE RENDER_LOG

Each run builds the same SimCord world (a fresh backend with its clock at the same start, so the
guild, channel and members get the same ids in every process) around a bot on DATA_DIR. A renderer
wrapper appends one line per finished render to RENDER_LOG and kills the process (the render service
batches as by default, BATCH_IMAGES=auto, its probe timed by tests/bot/batch_cost_model.py: `probe limit=N`
in RENDER_LOG):
- at step 2 of "a green circle" in the `burst` phase (mid-render);
- at step 1 of any "triangle" in every phase (a request that always brings the renderer down).
Phases:
- `burst`: five /imagine commands queued at once (queue held until all are acknowledged);
- `defer`: one /imagine, killed right after its defer (before anything else happens);
- `recover`: start up (recovery), let everything finish, exit 0.
Every acknowledged command is printed as `ACK <prompt>` before anything can kill the process.
"""

from __future__ import annotations

import asyncio
import logging
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
from bot.app import create_bot  # noqa: E402
from generation.queue.assembly import build_service  # noqa: E402
from generation.queue import CallbackWaiter  # noqa: E402
from bot.settings import Settings  # noqa: E402

BURST = [
    ("alice", "a red circle", 1),
    ("bob", "a blue square", 2),
    ("alice", "a green circle", 3),
    ("bob", "a black triangle", 4),
    ("alice", "a white square", 5),
]
DEFER_JOB = ("bob", "a yellow circle", 6)


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingRenderer:
    """The real renderer, with a log of finished renders and a process kill at chosen steps."""

    def __init__(self, renderer: Any, phase: str, log_path: Path) -> None:
        self._renderer = renderer
        self._phase = phase
        self._log_path = log_path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)

    def probe_batch_images(self, model: str) -> dict[int, float]:
        def log_line(line: str) -> None:
            with self._log_path.open("a") as log:
                log.write(f"probe {line}\n")

        return modelled_probe(self._renderer, model, log_line)

    def render_batch(self, requests: list[Any], *, on_progress: Any = None, is_cancelled: Any = None,
                     **options: Any) -> Any:
        """The production batch path; the process dies at the kill step of a doomed job in the call."""
        kill_at: list[int | None] = []
        for request in requests:
            if "triangle" in request.prompt:
                kill_at.append(1)
            elif request.prompt == "a green circle" and self._phase == "burst":
                kill_at.append(2)
            else:
                kill_at.append(None)
        with self._log_path.open("a") as log:
            log.write(f"batch {' | '.join(request.prompt for request in requests)}\n")

        def progress(index: int, event: Any) -> None:
            at = kill_at[index]
            if at is not None and event.step >= at:
                with self._log_path.open("a") as log:
                    log.write(f"killed in a batch of {len(requests)}: {' | '.join(r.prompt for r in requests)}\n")
                die()
            if on_progress is not None:
                on_progress(index, event)

        results = self._renderer.render_batch(requests, on_progress=progress, is_cancelled=is_cancelled, **options)
        with self._log_path.open("a") as log:
            for request in requests:
                log.write(f"rendered seed={request.seed} prompt={request.prompt}\n")
        return results


async def main(data_dir: Path, phase: str, log_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, device="cpu", dtype="float32", default_steps=4,
                        cpu_threads=1)
    gate = asyncio.Event()
    if phase != "burst":
        gate.set()
    env_holder: list[simcord.Env] = []

    idle = asyncio.Condition()

    async def held_until_burst_is_in(awaitable: Any) -> Any:
        async with idle:  # the worker has nothing to do: tell whoever waits for that
            idle.notify_all()
        woken = await awaitable
        await gate.wait()
        return woken

    async def result_wait(awaitable: Any) -> Any:
        return await env_holder[0].external_wait(awaitable, reason="render result")

    # The render service belongs to this host process, as in the playground: renders are outside work
    # for SimCord (so start-up recovery that renders does not count against its settle window).
    service = build_service(settings, CallbackWaiter(held_until_burst_is_in))
    service.renderer = CrashingRenderer(service.renderer, phase, log_path)
    await service.start()
    bot = create_bot(settings, service=service, waiter=CallbackWaiter(result_wait))
    env = simcord.Env(bot, settle_timeout=120.0)
    env_holder.append(env)
    original_defer = discord.InteractionResponse.defer

    async def defer_then_maybe_die(self: Any, *args: Any, **kwargs: Any) -> Any:
        outcome = await original_defer(self, *args, **kwargs)
        print(f"ACK {self._parent.namespace.prompt}", flush=True)
        if phase == "defer":
            die()
        return outcome

    discord.InteractionResponse.defer = defer_then_maybe_die  # type: ignore[method-assign]
    # The world exists before the bot starts, as Discord does for a restarted bot: recovery posts in it.
    guild = env.create_guild("Imagine Test")
    channel = guild.create_text_channel("imagine")
    members = {"alice": guild.add_member(env.create_user("alice")), "bob": guild.add_member(env.create_user("bob"))}
    await env.start()
    if phase == "burst":
        for who, prompt, seed in BURST:
            await members[who].slash(channel, "imagine", prompt=prompt, seed=seed)
        gate.set()
    elif phase == "defer":
        who, prompt, seed = DEFER_JOB
        await members[who].slash(channel, "imagine", prompt=prompt, seed=seed)
    await env.settle(timeout=300)
    async with idle:  # every queued job rendered (or the process was killed on the way)
        await idle.wait_for(lambda: not service.snapshot().entries)
    await env.settle(timeout=300)  # and posted
    for message in channel.history():
        print(f"MESSAGE {message.content!r} embeds={[embed.footer.text for embed in message.embeds]!r}", flush=True)
    await env.shutdown()
    await bot.close_resources()
    await service.close()


if __name__ == "__main__":
    # The bot's own lines (job state changes, recovery) on stderr, for a failing test to show.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("discord", "simcord", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
