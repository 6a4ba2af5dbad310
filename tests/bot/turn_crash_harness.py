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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness_common import (HeldWorker, KillingRenderer, bot_in_simcord, close, die, imagine_channel,
                            run_local_harness, start_local_service)
import simcord

from bot.settings import Settings
from storage.turns import TurnLog

TURNS = {"claim": "a red circle on a blue background --seed 21",
         "render": "a green circle on a yellow background --seed 22"}


class CrashingRenderer(KillingRenderer):
    """Kills the process at step 2 of the green circle in the `render` phase."""

    def __init__(self, renderer: Any, phase: str, log_path: Path) -> None:
        super().__init__(renderer, log_path)
        self._phase = phase

    def kill_step(self, request: Any) -> int | None:
        return 2 if self._phase == "render" and request.prompt.startswith("a green circle") else None

    def kill_line(self, prompts: Sequence[str]) -> str:
        return f"killed in a batch of {len(prompts)}"


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
    # `render`: the worker waits until both turns are queued, so they share one batch call (default batching).
    worker = HeldWorker(held=phase == "render")
    service = await start_local_service(settings, worker, lambda renderer: CrashingRenderer(renderer, phase, log_path))
    bot, env = bot_in_simcord(settings, "render result", service=service)
    channel, members = imagine_channel(env, ("alice",))
    alice = members["alice"]
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
        worker.release()
    else:
        for message in earlier:  # the gateway delivers them again
            env.backend.announce_message_create(message)
    await worker.until_done_and_posted(env, service)
    for posted in channel.history():
        print(f"MESSAGE {posted.author.name}: {posted.content!r}", flush=True)
    await close(env, bot, service)


if __name__ == "__main__":
    run_local_harness(main)
