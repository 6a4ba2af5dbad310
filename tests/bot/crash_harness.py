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

from pathlib import Path
from typing import Any

from harness_common import (HeldWorker, KillingRenderer, bot_in_simcord, close, imagine_channel,
                            print_acknowledgements, run_local_harness, start_local_service)

from bot.settings import Settings

BURST = [
    ("alice", "a red circle", 1),
    ("bob", "a blue square", 2),
    ("alice", "a green circle", 3),
    ("bob", "a black triangle", 4),
    ("alice", "a white square", 5),
]
DEFER_JOB = ("bob", "a yellow circle", 6)


class CrashingRenderer(KillingRenderer):
    """Kills at step 2 of "a green circle" in the `burst` phase, at step 1 of any "triangle" in every phase."""

    def __init__(self, renderer: Any, phase: str, log_path: Path) -> None:
        super().__init__(renderer, log_path)
        self._phase = phase

    def kill_step(self, request: Any) -> int | None:
        if "triangle" in request.prompt:
            return 1
        if request.prompt == "a green circle" and self._phase == "burst":
            return 2
        return None


async def main(data_dir: Path, phase: str, log_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, device="cpu", dtype="float32", default_steps=4,
                        cpu_threads=1)
    worker = HeldWorker(held=phase == "burst")  # until the whole burst is queued
    service = await start_local_service(settings, worker, lambda renderer: CrashingRenderer(renderer, phase, log_path))
    bot, env = bot_in_simcord(settings, "render result", service=service)
    print_acknowledgements(kill_at_ack=1 if phase == "defer" else None)
    # The world exists before the bot starts, as Discord does for a restarted bot: recovery posts in it.
    channel, members = imagine_channel(env, ("alice", "bob"))
    await env.start()
    if phase == "burst":
        for who, prompt, seed in BURST:
            await members[who].slash(channel, "imagine", prompt=prompt, seed=seed)
        worker.release()
    elif phase == "defer":
        who, prompt, seed = DEFER_JOB
        await members[who].slash(channel, "imagine", prompt=prompt, seed=seed)
    await worker.until_done_and_posted(env, service)
    for message in channel.history():
        print(f"MESSAGE {message.content!r} embeds={[embed.footer.text for embed in message.embeds]!r}", flush=True)
    await close(env, bot, service)


if __name__ == "__main__":
    run_local_harness(main)
