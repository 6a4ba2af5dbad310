"""The shared queue with real processes on a throwaway PostgreSQL: a gateway (the bot in SimCord, rendering
nothing) and render worker processes (`shared_harness.py`), killed with SIGKILL at chosen moments.

Leases are short (LEASE_S=2) so a killed worker's job comes back soon; nothing waits on a clock otherwise:
the processes wait on NOTIFY and the rows, each with a hang guard.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from bot_helpers import differing_from_a_render_again
from harness_common import stored_records

from storage import GenerationStatus, Store, signals

HARNESS = Path(__file__).with_name("shared_harness.py")
TIMEOUT_S = 600
HOLD_LOCK = 1919  # the advisory lock the gateway-kill test holds while a worker's first call waits on it


@pytest.fixture
def shared_env(postgres_database: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": postgres_database, "SHARED_QUEUE": "true", "LOCAL_WORKER": "false",
            "DATA_DIR": str(tmp_path / "data"), "DEVICE": "cpu", "DTYPE": "float32", "CPU_THREADS": "1",
            "OMP_NUM_THREADS": "1", "DEFAULT_STEPS": "4", "LEASE_S": "2", "QUEUE_POLL_S": "0.5",
            "QUEUE_PER_USER": "10", "QUEUE_TOTAL": "50", "LOG_LEVEL": "INFO", "HF_HUB_OFFLINE": "1",
            "DISCORD_TOKEN": ""}


class Processes:
    def __init__(self, env: dict[str, str], events: Path) -> None:
        self.env = env
        self.events = events
        self.workers: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []

    def start(self, name: str, args: list[str], env: dict[str, str], *, read_stdout: bool = False,
              ) -> subprocess.Popen[str]:
        """`python ARGS…`, its output in a log file of its own (`process.log`); with `read_stdout`, only its
        stderr (the test reads its stdout)."""
        self.logs.append(self.events.with_name(f"{name}-{len(self.logs)}.log"))
        with self.logs[-1].open("w") as log:
            process = subprocess.Popen([sys.executable, *args], env=env, text=True,
                                       stdout=subprocess.PIPE if read_stdout else log,
                                       stderr=log if read_stdout else subprocess.STDOUT)
        process.log = self.logs[-1]  # type: ignore[attr-defined]
        return process

    def worker(self, worker_id: str) -> subprocess.Popen[str]:
        process = self.start(worker_id, [str(HARNESS), "worker", str(self.events), worker_id], self.env)
        self.workers.append(process)
        return process

    def gateway(self, phase: str, die_after: int | str | None = None) -> subprocess.Popen[str]:
        """`die_after`: that many acknowledgements, or "rendering" (the first progress a worker reports)."""
        extra = [str(die_after)] if die_after is not None else []
        # In SimCord a periodic timer would keep the bot busy forever: the gateway runs on notifications only.
        return self.start(f"gateway-{phase}", [str(HARNESS), "gateway", phase, str(self.events), *extra],
                          {**self.env, "QUEUE_POLL_S": "0"}, read_stdout=True)

    def stop_workers(self) -> list[str]:
        errors = []
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            errors.append(process.log.read_text())  # type: ignore[attr-defined]
        return errors

    def event_lines(self, kind: str) -> list[list[str]]:
        if not self.events.exists():
            return []
        return [line.split(" ", 2)[1:] for line in self.events.read_text().splitlines() if line.startswith(kind + " ")]


@pytest.fixture
def processes(shared_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    running = Processes(shared_env, tmp_path / "events.log")
    yield running
    for process in running.workers:
        if process.poll() is None:
            process.kill()
            process.communicate()


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """(exit status, the rest of its stdout, its stderr)."""
    assert process.stdout is not None
    out = process.stdout.read()
    process.wait(timeout=TIMEOUT_S)
    return process.returncode, out, process.log.read_text()  # type: ignore[attr-defined]


def read_until(process: subprocess.Popen[str], marker: str) -> list[str]:
    """Lines of stdout up to and including `marker` (the process keeps running)."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith(marker):
            return lines
    process.wait(timeout=TIMEOUT_S)
    raise AssertionError(f"{marker!r} never came; stderr:\n{process.log.read_text()[-3000:]}")  # type: ignore[attr-defined]


@asynccontextmanager
async def opened_store(url: str, data_dir: Path) -> AsyncIterator[Store]:
    store = await Store.open(url, data_dir)
    try:
        yield store
    finally:
        await store.close()


async def all_records(url: str, data_dir: Path) -> list:
    async with opened_store(url, data_dir) as store:
        return await stored_records(store)


async def differing_from_records_rendered_again(shared_env: dict[str, str], records: list) -> list[str]:
    async with opened_store(shared_env["DATABASE_URL"], Path(shared_env["DATA_DIR"])) as store:
        return await differing_from_a_render_again(store, records)


def acknowledged(stdout_lines: list[str]) -> list[str]:
    """The prompts of the commands a gateway acknowledged (`ACK <prompt>`)."""
    return [line[4:] for line in stdout_lines if line.startswith("ACK ")]


async def restart_gateway_then_each_acknowledged_job_is_posted_once(processes: Processes, shared_env: dict[str, str],
                                                                    acked: list[str]) -> list:
    """After the first gateway was killed: a `recover` gateway delivers every acknowledged job, rendered once
    and posted once. Its records."""
    code, out_after, err = finish(processes.gateway("recover"))
    processes.stop_workers()
    assert code == 0, err[-4000:]

    records = await all_records(shared_env["DATABASE_URL"], Path(shared_env["DATA_DIR"]))
    assert sorted(record.prompt for record in records) == sorted(acked)
    assert all(record.status is GenerationStatus.DONE and record.message_id is not None for record in records)
    assert Counter(prompt for _, prompt in processes.event_lines("FINISH")) == Counter({p: 1 for p in acked})
    assert len(posted_ids(out_after)) == len(acked) and set(posted_ids(out_after).values()) == {1}
    return records


def probed_limits(processes: Processes) -> list[int]:
    """The limits BATCH_IMAGES=auto's probe settled on, one per worker that probed."""
    return [int(outcome.removeprefix("limit=")) for _, outcome in processes.event_lines("PROBE")]


def posted_ids(stdout: str) -> Counter[int]:
    return Counter(int(line.split()[1]) for line in stdout.splitlines() if line.startswith("MESSAGE "))


@pytest.mark.slow
@pytest.mark.system(reason="gateway and worker processes on PostgreSQL")
async def test_twenty_jobs_from_three_owners_finish_once_in_fair_order_across_two_workers(
        processes: Processes, shared_env: dict[str, str]) -> None:
    gateway = processes.gateway("burst")
    acked = acknowledged(read_until(gateway, "BURST IN"))
    assert len(acked) == 20
    processes.worker("w1")
    processes.worker("w2")
    code, out, err = finish(gateway)
    worker_errors = processes.stop_workers()
    assert code == 0, err[-4000:] + "\n".join(e[-2000:] for e in worker_errors)

    records = await all_records(shared_env["DATABASE_URL"], Path(shared_env["DATA_DIR"]))
    assert sorted(record.prompt for record in records) == sorted(acked)
    assert all(record.status is GenerationStatus.DONE and record.attempts == 1 for record in records)
    assert all(record.message_id is not None and len(record.images) == 1 for record in records)
    # Rendered once each, by both workers between them.
    finished = processes.event_lines("FINISH")
    assert Counter(prompt for _, prompt in finished) == Counter({prompt: 1 for prompt in acked})
    assert {worker for worker, _ in finished} == {"w1", "w2"}
    # Claimed in round-robin order across owners, whichever worker claimed.
    claimed = sorted(records, key=lambda record: record.started_at)
    owners = [record.prompt.split()[0] for record in claimed]
    assert owners == ["alice", "bob", "carol"] * 5 + ["alice", "bob"] * 2 + ["alice"]
    # Each owner's jobs in the order they asked.
    for owner in ("alice", "bob", "carol"):
        mine = [record.prompt for record in claimed if record.prompt.startswith(owner)]
        assert mine == sorted(mine, key=lambda prompt: int(prompt.split()[1]))
    # One message per job.
    assert len(posted_ids(out)) == 20 and set(posted_ids(out).values()) == {1}


@pytest.mark.slow
@pytest.mark.system(reason="gateway and worker processes on PostgreSQL")
async def test_a_worker_killed_mid_render_loses_its_job_to_the_other_worker(
        processes: Processes, shared_env: dict[str, str]) -> None:
    shared_env["DEFAULT_STEPS"] = "6"
    # Each worker renders the two jobs it holds in one pipeline call, at the default BATCH_IMAGES=auto (its
    # probe timed by batch_cost_model, so that a loaded machine settles on 2+ per call too).
    shared_env["WORKER_JOBS"] = "2"
    gateway = processes.gateway("small-doomed")
    read_until(gateway, "BURST IN")  # every job is queued before a worker starts: their first claims are pairs
    processes.worker("w1")
    processes.worker("w2")
    code, out, err = finish(gateway)
    processes.stop_workers()
    assert code == 0, err[-4000:]
    killed = [process for process in processes.workers if process.returncode == -signal.SIGKILL]
    assert len(killed) == 1, [process.returncode for process in processes.workers]

    records = await all_records(shared_env["DATABASE_URL"], Path(shared_env["DATA_DIR"]))
    doomed = next(record for record in records if "doomed" in record.prompt)
    assert doomed.status is GenerationStatus.DONE and doomed.attempts == 2 and len(doomed.images) == 1
    # The kill landed in a pipeline call of two jobs; its other job was taken back too, and rendered once.
    assert probed_limits(processes) and min(probed_limits(processes)) >= 2, processes.event_lines("PROBE")
    (killed_call,) = [line[1].split("|") for line in processes.event_lines("KILL")]
    assert len(killed_call) >= 2 and doomed.prompt in killed_call, killed_call
    assert all(record.status is GenerationStatus.DONE and record.message_id is not None for record in records)
    finished = Counter(prompt for _, prompt in processes.event_lines("FINISH"))
    assert finished == Counter({record.prompt: 1 for record in records})
    assert set(posted_ids(out).values()) == {1} and len(posted_ids(out)) == len(records)
    image_files = sorted(path.name for path in (Path(shared_env["DATA_DIR"]) / "images").rglob("*.png"))
    assert len(image_files) == len(records) == len(set(image_files))
    # The killed call's images, rendered by the other worker once their lease ran out, are what a fresh
    # render of each request gives in its recorded place.
    interrupted = [record for record in records if record.prompt in killed_call]
    assert await differing_from_records_rendered_again(shared_env, interrupted) == []


@pytest.mark.slow
@pytest.mark.system(reason="gateway and worker processes on PostgreSQL")
async def test_a_gateway_killed_in_a_burst_delivers_every_acknowledged_job_once_after_restart(
        processes: Processes, shared_env: dict[str, str]) -> None:
    processes.worker("w1")
    processes.worker("w2")
    first = processes.gateway("small", die_after=4)
    code, out_before, err = finish(first)
    assert code == -signal.SIGKILL, err[-4000:]
    acked = acknowledged(out_before.splitlines())
    assert len(acked) == 4
    await restart_gateway_then_each_acknowledged_job_is_posted_once(processes, shared_env, acked)


@pytest.mark.slow
@pytest.mark.system(reason="gateway and worker processes on PostgreSQL")
async def test_a_gateway_killed_while_a_worker_renders_a_batch_delivers_every_job_once_after_restart(
        processes: Processes, shared_env: dict[str, str]) -> None:
    # Each worker renders the two jobs it holds in one pipeline call, at the default BATCH_IMAGES=auto (its
    # probe timed by batch_cost_model). A worker's first call waits at step 2 for an advisory lock this test
    # holds until the gateway is dead; the gateway kills itself at the first progress a worker reports.
    shared_env.update(WORKER_JOBS="2", HOLD_LOCK=str(HOLD_LOCK))
    first = processes.gateway("small", die_after="rendering")
    acked = acknowledged(read_until(first, "BURST IN"))
    lock = await asyncpg.connect(signals.driver_dsn(shared_env["DATABASE_URL"]))
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", HOLD_LOCK)
        processes.worker("w1")
        processes.worker("w2")
        code, _, err = finish(first)
    finally:
        await lock.close()  # lets the held calls go on
    assert code == -signal.SIGKILL, err[-4000:]
    assert len(acked) == 6
    records = await restart_gateway_then_each_acknowledged_job_is_posted_once(processes, shared_env, acked)
    # The gateway died while a pipeline call of two jobs was rendering: begun before, went on after.
    assert probed_limits(processes) and min(probed_limits(processes)) >= 2, processes.event_lines("PROBE")
    events = processes.events.read_text().splitlines()
    died = next(index for index, line in enumerate(events) if line.startswith("GATEWAY "))
    resumed = [line.removeprefix("RESUME ") for line in events[died:] if line.startswith("RESUME ")]
    held_across = [call.split(" ", 1)[1].split("|") for call in resumed if f"BATCH {call}" in events[:died]]
    assert held_across and all(len(call) == 2 for call in held_across), events
    # The held calls' images (their worker went on after the gateway died) are what a fresh render of each
    # request gives in its recorded place.
    interrupted = [record for record in records if any(record.prompt in call for call in held_across)]
    assert await differing_from_records_rendered_again(shared_env, interrupted) == []


@pytest.mark.slow
@pytest.mark.system(reason="gateway and worker processes on PostgreSQL")
async def test_a_cancel_in_discord_stops_the_render_in_another_process_within_two_steps(
        processes: Processes, shared_env: dict[str, str]) -> None:
    shared_env["DEFAULT_STEPS"] = "30"
    processes.worker("w1")
    gateway = processes.gateway("cancel")
    code, out, err = finish(gateway)
    worker_errors = processes.stop_workers()
    assert code == 0, err[-4000:] + worker_errors[0][-4000:]
    assert "CLICKED Cancelled job #1." in out
    [record] = await all_records(shared_env["DATABASE_URL"], Path(shared_env["DATA_DIR"]))
    assert record.status is GenerationStatus.CANCELLED and not record.images
    steps = [int(line[1].rsplit(" ", 1)[1]) for line in processes.event_lines("STEP")]
    # The cancel lands while step 2 is held; the render stops at most two steps later.
    assert steps and max(steps) <= 2 + 2, steps
    assert processes.event_lines("STOPPED") and not processes.event_lines("FINISH")
