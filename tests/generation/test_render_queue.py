"""GenerationService: fair order, caps and reservations, cancel, before_start, failure isolation,
progress, model switches, and an event loop that keeps running while a render runs.

No test here relies on wall-clock time: renders that must stay queued or running are held by a
fake renderer blocked on a threading.Event (its gate), and the tests wait on events, counts and
job results. How long the event loop lags while rendering is measured by `python -m benchmarks.generation_bench`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading

import pytest
from gen_helpers import HANG_GUARD_S, FakeRenderer, fast_request

from generation.queue import CallbackWaiter

from generation import (
    GenerationRequest,
    GenerationService,
    Job,
    JobCancelled,
    JobFailed,
    Limits,
    QueueFull,
    RenderError,
)

NOT_STARTED = "The job could not be started because of an internal error."


async def started(renderer, limits: Limits = Limits(), **options) -> GenerationService:
    service = GenerationService(renderer, limits, **options)
    await service.start()
    return service


def submit(service: GenerationService, prompt: str = "a red circle", *, owner: str = "alice", **options) -> Job:
    """Submit a prepared request, as the bot does: prepare() first, then submit()."""
    return service.submit(service.prepare(fast_request(prompt)), owner=owner, **options)


async def wait_until_rendering(renderer: FakeRenderer) -> None:
    """Wait, off the event loop, until the fake renderer has begun a render."""
    assert await asyncio.to_thread(renderer.started.wait, HANG_GUARD_S), "no render started"


def dispatcher_task() -> asyncio.Task:
    """The service's dispatcher, found by its public task name (as a harness that cancels tasks would)."""
    tasks = [task for task in asyncio.all_tasks() if task.get_name() == "generation-dispatcher"]
    assert len(tasks) == 1
    return tasks[0]


# -- fair order --


async def test_round_robin_across_owners():
    renderer = FakeRenderer()
    service = await started(renderer)
    jobs = [submit(service, f"alice {i}", owner="alice") for i in range(1, 6)]
    jobs.append(submit(service, "bob 1", owner="bob"))
    jobs.append(submit(service, "carol 1", owner="carol"))
    expected = ["alice 1", "bob 1", "carol 1", "alice 2", "alice 3", "alice 4", "alice 5"]

    # Before the worker takes anything (nothing was awaited yet), the snapshot shows the fair order.
    snapshot = service.snapshot()
    assert [entry.position for entry in snapshot.entries] == list(range(1, 8))
    by_key = {job.key: job.request.prompt for job in jobs}
    assert [by_key[entry.key] for entry in snapshot.entries] == expected
    assert [entry.position for entry in snapshot.for_owner("bob")] == [2]

    await asyncio.gather(*(job.result() for job in jobs))
    assert renderer.rendered == expected
    assert all(job.done and job.succeeded and job.error is None and not job.cancelled for job in jobs)
    await service.close()


async def test_a_newcomer_goes_next_instead_of_waiting_a_whole_round():
    gate = threading.Event()
    renderer = FakeRenderer(gate=gate)
    service = await started(renderer)
    jobs = [submit(service, f"alice {i}", owner="alice") for i in range(1, 4)]
    await wait_until_rendering(renderer)  # alice 1 is rendering, held by the gate
    jobs.append(submit(service, "bob 1", owner="bob"))
    order = [entry.key for entry in service.snapshot().entries]
    assert order == [jobs[0].key, jobs[3].key, jobs[1].key, jobs[2].key]
    assert service.snapshot().entry(jobs[0].key).position == 0
    gate.set()
    await asyncio.gather(*(job.result() for job in jobs))
    assert renderer.rendered == ["alice 1", "bob 1", "alice 2", "alice 3"]
    await service.close()


# -- caps, reservations and when room is expected --


async def test_queue_caps_refuse_and_say_when_room_is_expected():
    # 40 steps at the default 0.1 s per step (nothing timed yet): 4 s per job. Nothing is awaited
    # between the submits and the checks, so no job has started and the ETAs are exact.
    service = await started(FakeRenderer(), per_owner_cap=2, total_cap=3)
    request = service.prepare(fast_request(num_inference_steps=40))
    service.submit(request, owner="alice")
    service.submit(request, owner="alice")
    with pytest.raises(QueueFull) as error:
        service.submit(request, owner="alice")
    assert str(error.value) == (
        "You already have 2 renders queued or running (the limit is 2); "
        "your next one should finish in about 4 s."
    )
    service.submit(request, owner="bob")  # bob's one runs after alice's first: done in about 8 s
    with pytest.raises(QueueFull) as error:
        service.submit(request, owner="carol")
    assert str(error.value) == "The render queue is full (3 jobs); room is expected in about 4 s."
    with pytest.raises(QueueFull):
        service.reserve("carol")  # reserve() applies the same caps
    assert len(service.snapshot().entries) == 3
    await service.close()


async def test_reservations_count_toward_the_caps_and_release_gives_room_back():
    gate = threading.Event()
    service = await started(FakeRenderer(gate=gate), per_owner_cap=2, total_cap=3)
    first, second = service.reserve("alice"), service.reserve("alice")
    assert service.snapshot().entries == []  # reservations are not jobs
    # Nothing of alice's is queued yet, so there is no ETA to give.
    expected = "You already have 2 renders queued or running (the limit is 2); try again in a moment."
    with pytest.raises(QueueFull) as error:
        service.reserve("alice")
    assert str(error.value) == expected
    with pytest.raises(QueueFull) as error:
        submit(service, owner="alice")  # a submit without a reservation checks the same caps
    assert str(error.value) == expected

    first.release()
    third = service.reserve("alice")  # the released room is free again
    first.release()  # harmless a second time: it does not free someone else's room
    with pytest.raises(QueueFull):
        service.reserve("alice")

    job = submit(service, owner="alice", reservation=second)  # a reservation is consumed, not added to
    with pytest.raises(QueueFull):
        service.reserve("alice")
    with pytest.raises(RuntimeError, match="already used"):
        submit(service, owner="alice", reservation=second)
    second.release()  # harmless once used

    bob = service.reserve("bob")  # the total: alice's job, alice's reservation, bob's reservation
    with pytest.raises(QueueFull) as error:
        service.reserve("carol")
    assert str(error.value).startswith("The render queue is full (3 jobs); room is expected in about ")
    bob.release()
    carol = service.reserve("carol")
    carol.release()
    third.release()

    gate.set()
    await job.result()
    for owner in ("alice", "alice", "bob"):  # everything was given back
        service.reserve(owner)
    await service.close()


async def test_submit_refuses_a_request_that_did_not_come_from_prepare():
    service = await started(FakeRenderer())
    reservation = service.reserve("alice")
    for unprepared in (GenerationRequest("a red circle"), fast_request(seed=None), fast_request(width=None)):
        with pytest.raises(ValueError, match="prepare"):
            service.submit(unprepared, owner="alice", reservation=reservation)
    assert service.snapshot().entries == []
    prepared = service.prepare(GenerationRequest("a red circle"))
    assert prepared.seed is not None and (prepared.width, prepared.height) == (64, 64)
    job = service.submit(prepared, owner="alice", reservation=reservation)  # not consumed by the refusals
    assert (await job.result()).request == prepared
    await service.close()


# -- cancelling --


async def test_cancel_a_queued_job():
    gate = threading.Event()
    renderer = FakeRenderer(gate=gate)
    service = await started(renderer)
    first = submit(service, "first")
    second = submit(service, "second")
    assert service.cancel(second.key) is True
    assert second.done and second.cancelled and not second.succeeded and second.error is None
    with pytest.raises(JobCancelled):
        await second.result()
    gate.set()
    await first.result()
    assert renderer.rendered == ["first"]
    assert service.cancel(second.key) is False  # already gone
    assert service.snapshot().entries == []
    await service.close()


async def test_cancel_a_running_job_stops_it_at_its_next_step():
    renderer = FakeRenderer(gate=threading.Event())  # never opened: only the cancel ends this render
    service = await started(renderer)
    running = submit(service, "running")
    await wait_until_rendering(renderer)
    assert service.snapshot().entry(running.key).position == 0
    assert service.cancel(running.key) is True
    with pytest.raises(JobCancelled):
        await running.result()
    assert running.cancelled and renderer.rendered == []
    assert service.cancel(running.key) is False
    await service.close()


async def test_cancel_a_running_job_with_the_real_pipeline(renderer):
    service = await started(renderer)
    running = service.submit(service.prepare(fast_request(num_inference_steps=40, count=2)), owner="alice")
    after = service.submit(service.prepare(fast_request(seed=2)), owner="bob")
    steps = []
    first_step = asyncio.Event()

    def on_progress(progress):
        steps.append(progress.step)
        first_step.set()

    running.add_progress_listener(on_progress)
    await asyncio.wait_for(first_step.wait(), HANG_GUARD_S)  # a guard against hanging, not a time limit
    assert service.snapshot().entry(running.key).position == 0
    assert service.cancel(running.key) is True
    with pytest.raises(JobCancelled):
        await running.result()
    assert running.cancelled and not running.succeeded
    assert max(steps) < 80  # stopped early, not after all 2 x 40 steps
    result = await after.result()  # the worker keeps serving
    assert len(result.images) == 1 and after.succeeded
    await service.close()


# -- before_start --


async def test_before_start_is_awaited_before_the_renderer_is_called():
    events: list[str] = []
    renderer = FakeRenderer(events=events)
    service = await started(renderer)
    entered, proceed = asyncio.Event(), asyncio.Event()

    async def before_start():
        events.append("before_start")
        entered.set()
        await proceed.wait()
        events.append("before_start done")

    job = submit(service, "first", before_start=before_start)
    await entered.wait()
    # The worker has taken the job (it is running), but the renderer has not been called.
    assert job.started_at is not None and not job.done
    assert service.snapshot().entry(job.key).position == 0
    assert events == ["before_start"] and not renderer.started.is_set()
    proceed.set()
    await job.result()
    assert events == ["before_start", "before_start done", "render first", "load tinyshapes"]
    await service.close()


async def test_a_raising_before_start_fails_only_that_job():
    events: list[str] = []
    renderer = FakeRenderer(events=events)
    service = await started(renderer)

    async def broken():
        raise OSError("the database is gone")

    failing = submit(service, "failing", before_start=broken)
    fine = submit(service, "fine")
    with pytest.raises(JobFailed) as error:
        await failing.result()
    assert error.value.reason == NOT_STARTED
    assert (failing.error, failing.cancelled, failing.succeeded) == (NOT_STARTED, False, False)
    await fine.result()
    assert fine.succeeded
    assert renderer.rendered == ["fine"]
    assert "render failing" not in events  # the renderer never saw the failed job
    await service.close()


async def test_a_job_cancelled_during_before_start_is_not_rendered():
    renderer = FakeRenderer()
    service = await started(renderer)
    entered, proceed = asyncio.Event(), asyncio.Event()

    async def before_start():
        entered.set()
        await proceed.wait()

    job = submit(service, "cancelled", before_start=before_start)
    after = submit(service, "after")
    await entered.wait()
    assert service.cancel(job.key) is True
    proceed.set()
    with pytest.raises(JobCancelled):
        await job.result()
    await after.result()
    assert renderer.rendered == ["after"]
    await service.close()


# -- failures --


async def test_a_failing_job_fails_alone_with_a_readable_reason():
    renderer = FakeRenderer()
    service = await started(renderer)
    failing = submit(service, "please explode")
    fine = submit(service, "a calm square")
    with pytest.raises(JobFailed) as error:
        await failing.result()
    reason = "Rendering failed: the fake renderer exploded"
    assert error.value.reason == reason
    assert (failing.done, failing.succeeded, failing.cancelled, failing.error) == (True, False, False, reason)
    await fine.result()
    assert fine.succeeded
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
    job = submit(service)
    await job.result()
    assert renderer.attempts == 2 and job.succeeded
    await service.close()

    renderer = OutOfMemoryRenderer(failures=5)
    service = await started(renderer)
    with pytest.raises(JobFailed) as error:
        await submit(service).result()
    assert error.value.reason == "Ran out of GPU memory rendering 1 image(s) at 64x64."
    assert renderer.attempts == 2  # bounded: max_attempts=2
    await service.close()


# -- progress, snapshots, models --


async def test_progress_reaches_listeners_on_the_event_loop():
    service = await started(FakeRenderer(steps=4))
    job = submit(service)
    seen = []
    job.add_progress_listener(lambda progress: seen.append((progress.step, progress.total, threading.get_ident())))
    await job.result()
    assert [(step, total) for step, total, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {thread for _, _, thread in seen} == {threading.get_ident()}
    await service.close()


async def test_snapshot_eta_grows_along_the_queue_and_learns_render_time():
    service = await started(FakeRenderer(seconds=0.05))
    await submit(service).result()
    snapshot = service.snapshot()
    assert snapshot.entries == [] and snapshot.avg_render_s > 0
    jobs = [submit(service, owner=owner) for owner in ("alice", "bob", "carol")]
    entries = service.snapshot().entries
    assert [entry.owner for entry in entries] == ["bob", "carol", "alice"]  # alice was served last
    etas = [entry.eta_s for entry in entries]
    assert etas == sorted(etas) and etas[0] > 0
    await asyncio.gather(*(job.result() for job in jobs))
    await service.close()


async def test_jobs_switch_models_on_the_one_worker_thread():
    events: list[str] = []
    renderer = FakeRenderer(events=events, load_s=0.5)
    service = await started(renderer, Limits(models=("tinyshapes", "other")))
    assert await service.load_model("tinyshapes") == 0.5
    requests = [fast_request("same"), fast_request("switched", model="other"), fast_request("again", model="other")]
    results = [await service.submit(service.prepare(request), owner="alice").result() for request in requests]
    assert [result.request.model for result in results] == ["tinyshapes", "other", "other"]
    assert [result.model_load_s for result in results] == [0.0, 0.5, 0.0]  # only the switch loads
    assert [event for event in events if event.startswith("load")] == ["load tinyshapes", "load other"]
    assert len(renderer.threads) == 1 and renderer.threads.pop().startswith("render")
    await service.close()


# -- idle wait, close, dispatcher cancelled from outside --


async def test_the_waiter_wraps_the_dispatchers_wait_for_work():
    reasons = []
    idle = asyncio.Event()

    async def idle_wait(awaitable):
        reasons.append("idle")
        idle.set()
        result = await awaitable
        reasons.append("woken")
        return result

    service = await started(FakeRenderer(), waiter=CallbackWaiter(idle_wait))
    await idle.wait()
    assert reasons == ["idle"]
    idle.clear()
    await submit(service).result()
    await idle.wait()  # back to waiting once the queue is empty
    assert reasons == ["idle", "woken", "idle"]
    await service.close()


async def test_close_cancels_queued_and_running_jobs():
    renderer = FakeRenderer(gate=threading.Event())  # never opened
    service = await started(renderer)
    jobs = [submit(service) for _ in range(3)]
    await wait_until_rendering(renderer)
    await service.close()  # returns once the running render has stopped
    assert [job.cancelled for job in jobs] == [True, True, True]
    assert renderer.finished.is_set() and renderer.rendered == []
    with pytest.raises(RuntimeError, match="not running"):
        submit(service)
    await service.close()  # closing twice is harmless


async def test_a_dispatcher_cancelled_from_outside_stops_its_jobs_and_still_closes():
    # SimCord detaches a bot by cancelling its tasks; the render must not keep running unseen.
    renderer = FakeRenderer(gate=threading.Event(), steps=40)  # never opened: only a cancel ends it
    service = await started(renderer)
    running = submit(service, "running", owner="alice")
    queued = submit(service, "queued", owner="bob")
    await wait_until_rendering(renderer)
    dispatcher = dispatcher_task()
    dispatcher.cancel()
    await asyncio.wait([dispatcher])
    assert dispatcher.cancelled()
    assert (running.cancelled, queued.cancelled) == (True, True)
    with pytest.raises(RuntimeError, match="not running"):
        submit(service)
    await service.close()
    # The worker thread saw the cancel and stopped at its next step (the gate never opened).
    assert await asyncio.to_thread(renderer.finished.wait, HANG_GUARD_S)
    assert renderer.rendered == []


async def test_a_dispatcher_cancelled_while_idle_refuses_new_work():
    # Otherwise a job submitted after a SimCord detach would wait forever.
    idle = asyncio.Event()

    def idle_wait(awaitable):
        idle.set()
        return awaitable

    service = await started(FakeRenderer(), waiter=CallbackWaiter(idle_wait))
    await idle.wait()
    dispatcher = dispatcher_task()
    dispatcher.cancel()
    await asyncio.wait([dispatcher])
    with pytest.raises(RuntimeError, match="not running"):
        submit(service)
    await service.close()


async def test_one_log_line_per_job_state_change(caplog):
    caplog.set_level(logging.INFO, logger="generation.queue")
    service = await started(FakeRenderer())
    done = submit(service, key="job-1")
    cancelled = submit(service, key="job-2")
    service.cancel(cancelled.key)  # nothing awaited yet: job-1 is still queued
    await done.result()
    await service.close()
    lines = [record.getMessage() for record in caplog.records if record.name == "generation.queue"]
    assert lines[:2] == ["job job-1 (owner alice): queued", "job job-2 (owner alice): queued"]
    assert lines[2] == "job job-2 (owner alice): cancelled"
    assert lines[3] == "job job-1 (owner alice): running"
    assert lines[4].startswith("job job-1 (owner alice): done (1 image(s) in ")
    assert len(lines) == 5


# -- the event loop stays free --


async def test_prepare_reads_no_model_files_on_the_event_loop_after_start(tinyshapes_dir, tmp_path):
    # start() reads the tokenizer and configs on the worker thread; prepare() must not go back to disk.
    from generation.models import ModelSource
    from generation.renderer import Renderer

    configs = tmp_path / "configs"  # the model's tokenizer and config files, without its weights
    shutil.copytree(tinyshapes_dir, configs, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.ckpt"))
    renderer = Renderer(ModelSource("tinyshapes", str(configs)), device="cpu")
    service = await started(renderer)
    shutil.rmtree(configs)
    prepared = service.prepare(GenerationRequest("a red circle"))
    assert (prepared.width, prepared.height) == (64, 64)
    await service.close()


async def test_the_event_loop_keeps_running_while_a_render_blocks():
    # The render blocks its thread until the gate opens, and only a coroutine on the event loop opens
    # it: if rendering held the loop, the ticker could not run and the fake render would give up.
    gate = threading.Event()
    renderer = FakeRenderer(gate=gate)
    service = await started(renderer)
    job = submit(service)
    await wait_until_rendering(renderer)
    ticks = 0

    async def ticker():
        nonlocal ticks
        for _ in range(1000):
            await asyncio.sleep(0)  # one turn of the event loop, not a wait for anything
            ticks += 1
        gate.set()

    await ticker()
    assert ticks == 1000 and not job.done  # the loop turned 1000 times while the render was blocked
    result = await job.result()
    assert len(result.images) == 1 and job.succeeded
    await service.close()
