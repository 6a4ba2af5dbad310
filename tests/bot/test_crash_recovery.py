"""kill -9 of the bot process, then a fresh process on the same data: nothing acknowledged is lost.

Each step runs `crash_harness.py` in its own process (the real bot in SimCord on one data folder):
1. `burst`: five /imagine from two members; SIGKILL mid-render of the third ("a green circle");
2. `recover`: the green circle renders again; "a black triangle" kills the process at its first step;
3. `recover`: the triangle kills it again (its second start);
4. `recover`: the triangle has stopped the renderer twice, so it fails with a reason its owner sees;
   the rest finishes;
5. `defer`: one /imagine, SIGKILL right after its defer;
6. `recover`: that job renders and is posted.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from bot_helpers import differing_from_a_render_again, run_crash_harness

from storage import GenerationStatus, Store

HARNESS = "crash_harness.py"
# Restarts after the burst until a run ends by itself: the triangle kills every call it is in (twice at
# most: then it fails), and how many jobs share those calls depends on BATCH_IMAGES=auto's probe (timed by
# batch_cost_model: 4 per call).
MAX_RECOVERIES = 4


@pytest.mark.slow
@pytest.mark.system(reason="bot processes killed with SIGKILL")
async def test_kill_9_at_any_moment_loses_nothing_and_renders_nothing_twice(tmp_path: Path) -> None:
    data_dir, render_log = tmp_path / "data", tmp_path / "renders.log"
    acknowledged: list[str] = []
    outputs: list[str] = []

    def run(phase: str, *endings: int) -> int:
        """Run one process of the harness; its exit status, which must be one of `endings`."""
        process = run_crash_harness(HARNESS, data_dir, phase, render_log)
        outputs.append(process.stdout)
        assert process.returncode in endings, f"{phase}: rc {process.returncode}\n{process.stderr[-3000:]}"
        acknowledged.extend(line[4:] for line in process.stdout.splitlines() if line.startswith("ACK "))
        return process.returncode

    killed, exits = -signal.SIGKILL, 0
    run("burst", killed)
    for _ in range(MAX_RECOVERIES):
        if run("recover", killed, exits) == exits:
            break
    else:
        raise AssertionError(f"still crashing after {MAX_RECOVERIES} restarts")
    run("defer", killed)
    run("recover", exits)
    assert len(acknowledged) == 6
    lines = render_log.read_text().splitlines()

    store = await Store.open(None, data_dir)
    try:
        records = {record.prompt: record for record in await _all(store)}
        # Every acknowledged command has its row.
        assert sorted(acknowledged) == sorted(records)

        # Nothing was rendered to the end twice; the triangle never finished.
        finished = Counter(line.split(" prompt=", 1)[1] for line in lines if line.startswith("rendered "))
        assert finished == Counter({prompt: 1 for prompt in acknowledged if "triangle" not in prompt})
        # The renders went through the production batch path at the default BATCH_IMAGES=auto: the burst's
        # probe settled on 2+ images per call, and a kill landed in a call of 2+ jobs.
        probes = [int(line[len("probe limit="):]) for line in lines if line.startswith("probe limit=")]
        assert probes and probes[0] >= 2, lines
        kills = [line[len("killed in a batch of "):].split(": ", 1) for line in lines
                 if line.startswith("killed in a batch of ")]
        assert kills and int(kills[0][0]) >= 2, lines  # the burst's kill landed in a call of two jobs or more
        killed_call = kills[0][1].split(" | ")

        # The job that brought the renderer down twice failed, with a reason its owner was shown.
        triangle = records["a black triangle"]
        assert triangle.status is GenerationStatus.FAILED and triangle.attempts == 2
        assert triangle.failure_reason == "this request stopped the renderer twice; try a smaller size or fewer images"
        assert any(f"Job #{triangle.id} failed: this request stopped the renderer twice" in out for out in outputs)

        # Everything else is done and posted exactly once.
        for prompt, record in records.items():
            if record is not triangle:
                assert record.status is GenerationStatus.DONE, (prompt, record.status)
                assert record.message_id is not None and record.delivery_failure is None, prompt
        # A job in a killed call is tried again, alone: it takes at most two attempts.
        assert all(record.attempts <= 2 for record in records.values()), {p: r.attempts for p, r in records.items()}
        assert "a green circle" in killed_call, lines  # the burst's call with the triangle: green is a bystander
        assert records["a green circle"].attempts == 2

        # The jobs of the killed call (the triangle never finishes) were rendered again to the same pixels as
        # a fresh render of each in its recorded place.
        interrupted = [records[prompt] for prompt in killed_call if "triangle" not in prompt]
        assert len(interrupted) >= 1 and all(record.images for record in interrupted)
        assert await differing_from_a_render_again(store, interrupted) == []
    finally:
        await store.close()


async def _all(store: Store) -> list:
    found = []
    generation_id = 1
    while (record := await store.get(generation_id)) is not None:
        found.append(record)
        generation_id += 1
    return found

