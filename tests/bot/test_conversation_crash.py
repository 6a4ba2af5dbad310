"""kill -9 of the bot process while it handles conversation turns, then fresh processes on the same data:
every message is answered exactly once (`turn_crash_harness.py` runs each step in its own process)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from bot_helpers import run_crash_harness

from storage import GenerationStatus, Store, TurnState

HARNESS = "turn_crash_harness.py"


@pytest.mark.slow
@pytest.mark.system(reason="bot processes killed with SIGKILL")
async def test_kill_9_between_claim_and_answer_and_mid_render_answers_every_turn_once(tmp_path: Path) -> None:
    data_dir, render_log = tmp_path / "data", tmp_path / "renders.log"
    data_dir.mkdir()

    def run(phase: str, ending: int) -> subprocess.CompletedProcess[str]:
        process = run_crash_harness(HARNESS, data_dir, phase, render_log)
        assert process.returncode == ending, f"{phase}: rc {process.returncode}\n{process.stderr[-3000:]}"
        return process

    claimed = run("claim", -signal.SIGKILL).stdout
    restarted = run("render", -signal.SIGKILL).stderr
    recovered = run("recover", 0)
    messages = json.loads((data_dir / "messages.json").read_text())
    assert len(messages) == 2 and f"CLAIMED {messages[0]['id']}" in claimed
    # The first turn was finished by the next process's start-up; the gateway's second deliveries were ignored.
    assert f"turn {messages[0]['id']}: finishing it after a restart" in restarted
    for sent in messages:
        assert f"turn {sent['id']}: already taken" in recovered.stderr
    lines = render_log.read_text().splitlines()
    # At the default BATCH_IMAGES=auto (its probe timed by batch_cost_model: 2+ images per call) both turns'
    # pictures were in the call that died.
    probes = [int(line[len("probe limit="):]) for line in lines if line.startswith("probe limit=")]
    assert probes and probes[0] >= 2 and "killed in a batch of 2" in lines, lines

    store = await Store.open(None, data_dir)
    try:
        records = []
        for sent in messages:
            turn = await store.turns.get(sent["id"])
            assert turn is not None and turn.state is TurnState.QUEUED, turn
            record = await store.get(turn.generation_id)
            assert record.status is GenerationStatus.DONE and record.message_id is not None, record
            assert record.delivery_failure is None and record.turn_text in sent["content"]
            records.append(record)
        # One generation per message, each rendered to the end once, each posted once.
        assert await store.count_history(records[0].owner_id) == 2
        finished_renders = Counter(line.split("prompt=", 1)[1] for line in lines if line.startswith("rendered "))
        assert finished_renders == Counter({record.prompt: 1 for record in records}), lines
        # The last process posted both results, once each.
        posts = [line for line in recovered.stdout.splitlines() if line.startswith("MESSAGE TestBot: ")]
        assert len(posts) == 2, recovered.stdout
        assert [record.attempts for record in records] == [2, 2]  # killed mid-render once, rendered again
    finally:
        await store.close()
