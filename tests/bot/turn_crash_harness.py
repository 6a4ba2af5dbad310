"""A bot process for the turn crash test: the real bot in SimCord, killed with SIGKILL at chosen moments.

    python tests/bot/turn_crash_harness.py DATA_DIR PHASE RENDER_LOG

Each run builds the same SimCord world around a bot on DATA_DIR (the render service with its default
batching, BATCH_IMAGES=auto, as in production; its probe timed by tests/bot/batch_cost_model.py, logged as
`probe limit=N` in RENDER_LOG). Messages members sent in earlier runs are put back in place under their ids
(Discord keeps them; the bot only sees them again if it fetches them). Phases:
- `claim`: alice mentions the bot with a new request; the process dies right after the bot claimed the
  message, before anything else is recorded or answered;
- `render`: start-up finishes the claimed turn; alice mentions the bot again; both pictures are rendered in
  one batch call, and the process dies in it (at step 2 of the second turn's "a green circle …");
- `recover`: start up (recovery), and the gateway delivers both messages once more (as after a resume);
  let everything finish and exit 0.
Each message is written to DATA_DIR/messages.json before the bot can see it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import simcord  # noqa: E402

from batch_cost_model import modelled_probe  # noqa: E402
from bot.app import create_bot  # noqa: E402
from generation.queue.assembly import build_service  # noqa: E402
from bot.settings import Settings  # noqa: E402
from generation.queue import CallbackWaiter  # noqa: E402
from storage.turns import TurnLog  # noqa: E402

TURNS = {"claim": "a red circle on a blue background --seed 21",
         "render": "a green circle on a yellow background --seed 22"}


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingRenderer:
    """The real renderer; logs finished renders and kills the process at step 2 of the green circle."""

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

    def render_batch(self, requests: list[Any], *, on_progress: Any = None, **options: Any) -> Any:
        doomed = [self._phase == "render" and request.prompt.startswith("a green circle") for request in requests]
        with self._log_path.open("a") as log:
            log.write(f"batch {' | '.join(request.prompt for request in requests)}\n")

        def progress(index: int, event: Any) -> None:
            if doomed[index] and event.step >= 2:
                with self._log_path.open("a") as log:
                    log.write(f"killed in a batch of {len(requests)}\n")
                die()
            if on_progress is not None:
                on_progress(index, event)

        results = self._renderer.render_batch(requests, on_progress=progress, **options)
        with self._log_path.open("a") as log:
            for request in requests:
                log.write(f"rendered prompt={request.prompt}\n")
        return results


def kill_after_claiming() -> None:
    claim = TurnLog.claim_message

    async def claim_then_die(self: TurnLog, message_id: int, **options: Any) -> bool:
        taken = await claim(self, message_id, **options)
        if taken:
            print(f"CLAIMED {message_id}", flush=True)
            die()
        return taken

    TurnLog.claim_message = claim_then_die  # type: ignore[method-assign]


def put_back(env: simcord.Env, channel_id: int, author_id: int, content: str, message_id: int) -> Any:
    """A message sent in an earlier run, in place under its id, not delivered to the bot."""
    backend = env.backend
    stored = backend.create_message(channel_id, author_id, content, broadcast=False)
    del backend.messages[channel_id][stored.id]
    stored.id = message_id
    backend.messages[channel_id][message_id] = stored
    return stored


async def main(data_dir: Path, phase: str, log_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, device="cpu", dtype="float32", default_steps=4,
                        cpu_threads=1)
    if phase == "claim":
        kill_after_claiming()
    env_holder: list[simcord.Env] = []
    idle = asyncio.Condition()
    # `render`: the worker waits until both turns are queued, so they share one batch call (default batching).
    both_queued = asyncio.Event()
    if phase != "render":
        both_queued.set()

    async def worker_idle(awaitable: Any) -> Any:
        async with idle:
            idle.notify_all()
        woken = await awaitable
        await both_queued.wait()
        return woken

    async def result_wait(awaitable: Any) -> Any:
        return await env_holder[0].external_wait(awaitable, reason="render result")

    service = build_service(settings, CallbackWaiter(worker_idle))
    service.renderer = CrashingRenderer(service.renderer, phase, log_path)
    await service.start()
    bot = create_bot(settings, service=service, waiter=CallbackWaiter(result_wait))
    env = simcord.Env(bot, settle_timeout=120.0)
    env_holder.append(env)
    guild = env.create_guild("Imagine Test")
    channel = guild.create_text_channel("imagine")
    alice = guild.add_member(env.create_user("alice"))
    sent_file = data_dir / "messages.json"
    sent: list[dict[str, Any]] = json.loads(sent_file.read_text()) if sent_file.exists() else []
    earlier = [put_back(env, channel.id, alice.id, item["content"], item["id"]) for item in sent]
    while earlier and env.backend.snowflake() <= earlier[-1].id:
        pass  # new messages get ids after the ones put back
    await env.start()
    if phase in TURNS:
        content = f"{bot.user.mention} {TURNS[phase]}"
        message = env.backend.create_message(channel.id, alice.id, content, broadcast=False)
        sent_file.write_text(json.dumps([*sent, {"id": message.id, "content": content}]))
        env.backend.announce_message_create(message)
        await env.settle(timeout=300)  # start-up finished the claimed turn; the new one is queued too
        both_queued.set()
    else:
        for message in earlier:  # the gateway delivers them again
            env.backend.announce_message_create(message)
    await env.settle(timeout=300)
    async with idle:  # every queued job rendered (or the process was killed on the way)
        await idle.wait_for(lambda: not service.snapshot().entries)
    await env.settle(timeout=300)  # and posted
    for posted in channel.history():
        print(f"MESSAGE {posted.author.name}: {posted.content!r}", flush=True)
    await env.shutdown()
    await bot.close_resources()
    await service.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("discord", "simcord", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
