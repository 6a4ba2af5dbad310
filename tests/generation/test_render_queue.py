"""GenerationService: fair order, caps, cancel, failure isolation, progress, and a responsive event loop."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time

import pytest
from gen_helpers import FakeRenderer, fast_request

from generation import (
    GenerationRequest,
    GenerationService,
    JobCancelled,
    JobFailed,
    JobState,
    Limits,
    QueueFull,
    RenderError,
)


async def started(renderer, **options) -> GenerationService:
    service = GenerationService(renderer, Limits(), **options)
    await service.start()
    return service


async def test_round_robin_across_owners():
    renderer = FakeRenderer()
    service = await started(renderer)
    jobs = [service.submit(fast_request(f"alice {i}"), owner="alice") for i in range(1, 6)]
    jobs.append(service.submit(fast_request("bob 1"), owner="bob"))
    jobs.append(service.submit(fast_request("carol 1"), owner="carol"))
    expected = ["alice 1", "bob 1", "carol 1", "alice 2", "alice 3", "alice 4", "alice 5"]

    # Before the worker starts, the snapshot already shows the fair order.
    snapshot = service.snapshot()
    assert [entry.position for entry in snapshot.entries] == list(range(1, 8))
    by_key = {job.key: job.request.prompt for job in jobs}
    assert [by_key[entry.key] for entry in snapshot.entries] == expected
    assert [entry.position for entry in snapshot.for_owner("bob")] == [2]

    await asyncio.gather(*(job.result() for job in jobs))
    assert renderer.rendered == expected
    assert all(job.state is JobState.DONE for job in jobs)
    await service.close()


async def test_a_newcomer_goes_next_instead_of_waiting_a_whole_round():
    renderer = FakeRenderer(seconds=0.2)
    service = await started(renderer)
    jobs = [service.submit(fast_request(f"alice {i}"), owner="alice") for i in range(1, 4)]
    while not renderer.started.is_set():  # alice 1 is rendering
        await asyncio.sleep(0.005)
    jobs.append(service.submit(fast_request("bob 1"), owner="bob"))
    order = [entry.key for entry in service.snapshot().entries]
    assert order == [jobs[0].key, jobs[3].key, jobs[1].key, jobs[2].key]
    await asyncio.gather(*(job.result() for job in jobs))
    assert renderer.rendered == ["alice 1", "bob 1", "alice 2", "alice 3"]
    await service.close()


async def test_queue_caps_refuse_with_a_clear_error():
    service = await started(FakeRenderer(seconds=0.2), per_owner_cap=2, total_cap=3)
    service.submit(fast_request(), owner="alice")
    service.submit(fast_request(), owner="alice")
    with pytest.raises(QueueFull) as error:
        service.submit(fast_request(), owner="alice")
    assert str(error.value) == (
        "You already have 2 renders queued or running (the limit is 2); wait for one to finish."
    )
    service.submit(fast_request(), owner="bob")
    with pytest.raises(QueueFull) as error:
        service.submit(fast_request(), owner="carol")
    assert str(error.value) == "The render queue is full (3 jobs); try again in a few minutes."
    await service.close()


async def test_cancel_a_queued_job():
    renderer = FakeRenderer(seconds=0.2)
    service = await started(renderer)
    first = service.submit(fast_request("first"), owner="alice")
    second = service.submit(fast_request("second"), owner="alice")
    assert service.cancel(second.key) is True
    assert second.state is JobState.CANCELLED
    with pytest.raises(JobCancelled):
        await second.result()
    await first.result()
    assert renderer.rendered == ["first"]
    assert service.cancel(second.key) is False  # already gone
    assert service.snapshot().total == 0
    await service.close()


async def test_cancel_a_running_job_with_the_real_pipeline(renderer):
    service = await started(renderer)
    running = service.submit(fast_request(num_inference_steps=40, count=2), owner="alice")
    after = service.submit(fast_request(seed=2), owner="bob")
    steps = []
    first_step = asyncio.Event()

    def on_progress(progress):
        steps.append(progress.step)
        first_step.set()

    running.add_progress_listener(on_progress)
    await asyncio.wait_for(first_step.wait(), timeout=30)
    assert service.snapshot().entry(running.key).position == 0
    assert service.cancel(running.key) is True
    with pytest.raises(JobCancelled):
        await running.result()
    assert running.state is JobState.CANCELLED
    assert max(steps) < 80  # stopped early, not after all 2 x 40 steps
    result = await after.result()  # the worker keeps serving
    assert len(result.images) == 1
    await service.close()


async def test_a_failing_job_fails_alone_with_a_readable_reason():
    renderer = FakeRenderer()
    service = await started(renderer)
    failing = service.submit(fast_request("please explode"), owner="alice")
    fine = service.submit(fast_request("a calm square"), owner="alice")
    with pytest.raises(JobFailed) as error:
        await failing.result()
    assert error.value.reason == "Rendering failed: the fake renderer exploded"
    assert (failing.state, failing.error) == (JobState.FAILED, "Rendering failed: the fake renderer exploded")
    await fine.result()
    assert fine.state is JobState.DONE
    await service.close()


class OutOfMemoryRenderer(FakeRenderer):
    """Fails with a retryable out-of-memory error the first `failures` times."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def render(self, request, **kwargs):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RenderError("Ran out of GPU memory rendering 1 image(s) at 64x64.", retryable=True)
        return super().render(request, **kwargs)


async def test_out_of_memory_is_retried_once_then_reported():
    renderer = OutOfMemoryRenderer(failures=1)
    service = await started(renderer)
    await service.submit(fast_request(), owner="alice").result()
    assert renderer.attempts == 2
    await service.close()

    renderer = OutOfMemoryRenderer(failures=5)
    service = await started(renderer)
    with pytest.raises(JobFailed) as error:
        await service.submit(fast_request(), owner="alice").result()
    assert error.value.reason == "Ran out of GPU memory rendering 1 image(s) at 64x64."
    assert renderer.attempts == 2  # bounded: max_attempts=2
    await service.close()


async def test_progress_reaches_listeners_on_the_event_loop():
    service = await started(FakeRenderer(steps=4))
    job = service.submit(fast_request(), owner="alice")
    seen = []
    job.add_progress_listener(lambda progress: seen.append((progress.step, progress.total, threading.get_ident())))
    await job.result()
    assert [(step, total) for step, total, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {thread for _, _, thread in seen} == {threading.get_ident()}
    await service.close()


async def test_snapshot_eta_grows_along_the_queue_and_learns_render_time():
    service = await started(FakeRenderer(seconds=0.05))
    await service.submit(fast_request(), owner="alice").result()
    snapshot = service.snapshot()
    assert snapshot.total == 0 and snapshot.avg_render_s > 0
    jobs = [service.submit(fast_request(), owner=owner) for owner in ("alice", "bob", "carol")]
    entries = service.snapshot().entries
    assert [entry.owner for entry in entries] == ["bob", "carol", "alice"]  # alice was served last
    etas = [entry.eta_s for entry in entries]
    assert etas == sorted(etas) and etas[0] > 0
    await asyncio.gather(*(job.result() for job in jobs))
    await service.close()


async def test_idle_wait_wraps_the_dispatchers_wait_for_work():
    reasons = []

    def idle_wait(awaitable):
        reasons.append("idle")
        return awaitable

    service = await started(FakeRenderer(), idle_wait=idle_wait)
    await asyncio.sleep(0.01)
    assert reasons == ["idle"]
    await service.submit(fast_request(), owner="alice").result()
    await asyncio.sleep(0.01)
    assert reasons == ["idle", "idle"]
    await service.close()


async def test_close_cancels_queued_jobs():
    service = await started(FakeRenderer(seconds=0.2))
    jobs = [service.submit(fast_request(), owner="alice") for _ in range(3)]
    await asyncio.sleep(0.05)
    await service.close()
    states = [job.state for job in jobs]
    assert states[1:] == [JobState.CANCELLED, JobState.CANCELLED]
    with pytest.raises(RuntimeError, match="not running"):
        service.submit(fast_request(), owner="alice")


async def test_a_dispatcher_cancelled_from_outside_stops_its_jobs_and_still_closes():
    # SimCord detaches a bot by cancelling its tasks; the render must not keep running unseen.
    renderer = FakeRenderer(seconds=2.0, steps=40)
    service = await started(renderer)
    running = service.submit(fast_request("running"), owner="alice")
    queued = service.submit(fast_request("queued"), owner="bob")
    while not renderer.started.is_set():
        await asyncio.sleep(0.005)
    service._dispatcher.cancel()
    await asyncio.sleep(0.01)
    assert (running.state, queued.state) == (JobState.CANCELLED, JobState.CANCELLED)
    await service.close()
    assert await asyncio.to_thread(renderer.finished.wait, 1.0)  # stopped at its next step, not after 2 s
    assert renderer.rendered == []


async def test_a_dispatcher_cancelled_while_idle_refuses_new_work():
    # Otherwise a job submitted after a SimCord detach would wait forever.
    service = await started(FakeRenderer())
    await asyncio.sleep(0.01)
    service._dispatcher.cancel()
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="not running"):
        service.submit(fast_request(), owner="alice")
    await service.close()


async def test_one_log_line_per_job_state_change(caplog):
    caplog.set_level(logging.INFO, logger="generation.service")
    service = await started(FakeRenderer(seconds=0.2))
    done = service.submit(fast_request(), owner="alice", key="job-1")
    cancelled = service.submit(fast_request(), owner="alice", key="job-2")
    service.cancel(cancelled.key)
    await done.result()
    await service.close()
    lines = [record.getMessage() for record in caplog.records if record.name == "generation.service"]
    assert lines[:2] == ["job job-1 (owner alice): queued", "job job-2 (owner alice): queued"]
    assert lines[2] == "job job-2 (owner alice): cancelled"
    assert lines[3] == "job job-1 (owner alice): running"
    assert lines[4].startswith("job job-1 (owner alice): done (1 image(s) in ")
    assert len(lines) == 5


async def test_prepare_reads_no_model_files_on_the_event_loop_after_start(tinyshapes_dir, tmp_path):
    # start() reads the tokenizer and configs on the worker thread; prepare() must not go back to disk.
    from generation.models import ModelSource
    from generation.renderer import Renderer

    configs = tmp_path / "configs"
    shutil.copytree(tinyshapes_dir / "tokenizer", configs / "tokenizer")
    for part in ("unet", "vae"):
        (configs / part).mkdir(parents=True)
        shutil.copy(tinyshapes_dir / part / "config.json", configs / part / "config.json")
    renderer = Renderer(ModelSource("tinyshapes", str(configs)), device="cpu")
    service = await started(renderer)
    shutil.rmtree(configs)
    prepared = service.prepare(GenerationRequest("a red circle"))
    assert (prepared.width, prepared.height) == (64, 64)
    await service.close()


async def test_the_event_loop_is_never_blocked_while_rendering(renderer):
    service = await started(renderer)
    job = service.submit(fast_request(num_inference_steps=20, count=2), owner="alice")
    lags = []
    while not job.done:
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - before - 0.005)
    result = await job.result()
    assert len(result.images) == 2 and len(lags) > 10
    assert max(lags) < 0.05, f"event loop lagged {max(lags) * 1000:.0f} ms"
    await service.close()
