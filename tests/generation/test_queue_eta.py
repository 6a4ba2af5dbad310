"""Queue positions and ETAs with batching, as pure functions (issue 20.4): no wall clock, the speed figures
are given."""

from __future__ import annotations

from gen_helpers import fast_request

from bot.presentation import queue_place, queued_status
from generation.jobs import QueueEntry
from generation.queue.eta import RenderSpeed, never_decreasing, queue_entries, seconds_left


def test_a_running_batch_has_the_steps_left_to_run():
    # Estimated 10 s; 8 s spent at step 10 of 50: 40 steps left at 0.8 s per step, not "about 0 s".
    assert seconds_left(10.0, 8.0, 10, 50) == 32.0
    assert seconds_left(10.0, 4.0, 0, 0) == 6.0  # no step yet: the estimate less the time spent
    assert seconds_left(10.0, 12.0, 0, 50) == 0.0
    assert seconds_left(10.0, 12.0, 50, 50) == 0.0


def test_jobs_of_one_batch_share_its_place_and_etas_never_decrease():
    entries = queue_entries([("r", "ann")], 5.0,
                            [([("a", "alice"), ("b", "bob"), ("c", "bob"), ("d", "carol")], 8.0),
                             ([("e", "dave")], 2.0), ([("f", "erin")], 0.0)])
    assert [(entry.key, entry.position, entry.batch_jobs) for entry in entries] == [
        ("r", 0, 1), ("a", 1, 4), ("b", 1, 4), ("c", 1, 4), ("d", 1, 4), ("e", 2, 1), ("f", 3, 1)]
    assert [entry.eta_s for entry in entries] == [5.0, 13.0, 13.0, 13.0, 13.0, 15.0, 15.0]
    # The shared queue's estimates come per job: a later one is never done before an earlier one.
    raw = [QueueEntry("1", "a", 0, 20.0), QueueEntry("2", "b", 1, 6.0), QueueEntry("3", "c", 1, 25.0)]
    assert [entry.eta_s for entry in never_decreasing(raw)] == [20.0, 20.0, 25.0]


def test_etas_of_planned_batches_come_from_the_speed_measured_at_their_size():
    speed = RenderSpeed()
    request = fast_request("a red circle", num_inference_steps=10)
    speed.record([request] * 4, images=4, per_call=4, seconds=2.0)  # 0.05 s per image-step at 4 per call
    batches = [([("a", "alice"), ("b", "bob"), ("c", "carol"), ("d", "dave")], speed.batch_seconds([request] * 4, 4))]
    assert [entry.eta_s for entry in queue_entries([], 0.0, batches)] == [2.0] * 4


def test_the_status_line_says_which_batch_and_with_how_many_others():
    request = fast_request("a red circle")
    assert "Queued — next batch, with 3 others, ETA ~13 s" in queued_status(request, QueueEntry("a", "x", 1, 13.0, 4))
    assert "Queued — position 1, ETA" in queued_status(request, QueueEntry("a", "x", 1, 13.0, 1))
    assert queue_place(QueueEntry("a", "x", 3, 30.0, 2)) == "position 3 (a batch, with 1 other)"
    assert "Starting now" in queued_status(request, QueueEntry("a", "x", 0, 3.0, 2))


async def test_the_service_gives_a_running_job_the_time_its_steps_left_need(monkeypatch):
    import asyncio
    import threading

    from gen_helpers import HANG_GUARD_S, BatchingFakeRenderer

    import generation.queue.inprocess as inprocess
    from generation import GenerationService, Limits
    from generation.request import Progress

    gate = threading.Event()
    renderer = BatchingFakeRenderer(gate=gate, steps=4)
    service = GenerationService(renderer, Limits())
    await service.start()
    running = service.submit(service.prepare(fast_request("a red circle")), owner="alice")
    waiting = service.submit(service.prepare(fast_request("a blue square", width=128)), owner="bob")
    assert await asyncio.to_thread(renderer.started.wait, HANG_GUARD_S)
    # A virtual clock: 8 s since the batch started, and the job reports step 10 of 50.
    monkeypatch.setattr(inprocess, "_monotonic", lambda: service._running_since + 8.0)
    running.progress = Progress(10, 50, None)
    entries = service.snapshot().entries
    assert [(entry.key, entry.position, entry.eta_s) for entry in entries][0] == (running.key, 0, 32.0)
    assert entries[1].key == waiting.key and entries[1].eta_s > 32.0
    gate.set()
    await asyncio.gather(running.result(), waiting.result())
    await service.close()


def test_a_rendering_job_on_the_shared_queue_has_the_time_its_steps_left_need():
    """Issue 20.4 on SHARED_QUEUE=true: the gateway hears a worker's progress and gives the rendering job the
    pace of its steps, and the jobs behind it wait only for what is left (a virtual clock)."""
    from types import SimpleNamespace

    from storage import GenerationStatus
    from storage.claims import QueuedJob, WorkerRecord

    from generation.queue.shared import SharedQueue
    from storage import signals

    now = [100.0]
    queue = SharedQueue(None, SimpleNamespace(shared=True), per_owner_cap=3, total_cap=10, poll_s=0,
                        max_attempts=2, clock=lambda: now[0])
    queue.shared_workers = [WorkerRecord(id="w1", host="h", models=["tinyshapes"], max_size=88, loaded_model=None,
                                         current_jobs=[1], jobs_done=5, images_done=10, render_s=20.0,
                                         started_at=None, heartbeat_at=None, stopped_at=None)]  # 2 s per image
    queue.shared_entries = [QueuedJob(1, 7, GenerationStatus.RUNNING, 4, 20, "w1", None),
                            QueuedJob(2, 8, GenerationStatus.QUEUED, 1, 20, None, None)]
    assert [entry.eta_s for entry in queue.snapshot().entries] == [8.0, 10.0]  # nothing heard: whole estimate
    queue._on_signal(signals.PROGRESS, "1 5 20")
    assert [entry.eta_s for entry in queue.snapshot().entries] == [6.0, 8.0]  # 15 of 20 steps of the estimate
    now[0] += 10.0
    queue._on_signal(signals.PROGRESS, "1 10 20")  # 5 steps in 10 s: 10 steps left take 20 s
    assert [entry.eta_s for entry in queue.snapshot().entries] == [20.0, 22.0]
    queue._on_signal(signals.PROGRESS, "1 2 20")  # a new attempt starts over
    assert queue.paces[1].first_step == 2
