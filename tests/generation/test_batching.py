"""Batches in the render service: fairness, one call per count=4 request, pixels alone vs batched,
cancel one job of a batch, out-of-memory split and retry, and positions and ETAs per batch.

As in test_render_queue, nothing here relies on wall-clock time: renders are held by a fake renderer's
gate, and the tests wait on events, counts and job results.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from gen_helpers import HANG_GUARD_S, BatchingFakeRenderer, FakeRenderer, fast_request

from generation import GenerationService, JobCancelled, JobFailed, Limits
from generation.batching import (
    BATCH_TOLERANCE_MAX,
    BATCH_TOLERANCE_MEAN,
    BatchLimit,
    batch_key,
    parse_batch_images,
    probe_rates,
    probed_limit,
)
from generation.request import BatchPlace
from generation.queue.eta import DEFAULT_SECONDS_PER_STEP


async def started(renderer, limits: Limits = Limits(), **options) -> GenerationService:
    service = GenerationService(renderer, limits, **options)
    await service.start()
    return service


def submit(service, prompt, *, owner, **changes):
    return service.submit(service.prepare(fast_request(prompt, **changes)), owner=owner)


async def wait_until_rendering(renderer) -> None:
    assert await asyncio.to_thread(renderer.started.wait, HANG_GUARD_S), "no render started"


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# -- the compatibility key --


def test_the_batch_key_separates_what_a_pipeline_call_needs_equal():
    base = fast_request("a red circle", seed=1)
    same_call = [base.replace(prompt="a blue square", negative_prompt=""), base.replace(seed=9, count=3),
                 base.replace(variation_seed=4, variation_strength=0.5)]
    assert all(batch_key(request) == batch_key(base) for request in same_call)
    other_call = [base.replace(width=128), base.replace(num_inference_steps=5), base.replace(sampler="Euler"),
                  base.replace(guidance_scale=7.0), base.replace(model="other"),
                  base.replace(negative_prompt="blur"), base.replace(prompt="a red circle <lora:ink:0.5>"),
                  base.replace(prompt="a (red:1.3) circle"), base.replace(init_image=b"png", strength=0.5)]
    assert all(batch_key(request) != batch_key(base) for request in other_call)
    weighted = base.replace(prompt="a (red:1.3) circle")
    assert batch_key(weighted) == batch_key(weighted.replace(seed=5))  # the same weighted prompt shares


def test_batch_images_is_auto_or_a_whole_number():
    assert parse_batch_images("auto") == "auto" and parse_batch_images(" 8 ") == 8 and parse_batch_images(3) == 3
    for wrong in ("0", "many", "-2", 0, 2.5):
        with pytest.raises(ValueError, match="BATCH_IMAGES"):
            parse_batch_images(wrong)


def test_the_auto_limit_grows_while_images_per_second_improve_and_halves_on_out_of_memory():
    cuda = BatchLimit("auto", grows=True)
    assert cuda.limit("m", 64, 64) == 1
    for images, seconds in ((1, 1.0), (2, 1.0), (4, 1.2)):  # 1, 2, 3.3 images/s: grows
        cuda.record("m", 64, 64, images, seconds)
    assert cuda.limit("m", 64, 64) == 8
    cuda.record("m", 64, 64, 8, 2.6)  # 3.1 images/s: no better than 4 per call, so 4 it stays
    assert cuda.limit("m", 64, 64) == 4
    cuda.out_of_memory("m", 64, 64, 4)
    assert cuda.limit("m", 64, 64) == 2 and cuda.limit("m", 128, 128) == 1  # per model and size
    cpu = BatchLimit("auto")
    assert cpu.needs_probe("m") and cpu.limit("m", 64, 64) == 1
    assert cpu.set_probed("m", {1: 0.7, 2: 1.0, 4: 1.2, 8: 1.24}) == 4  # within 5 % of the best
    assert not cpu.needs_probe("m") and cpu.limit("m", 64, 64) == 4
    assert BatchLimit(6).limit("m", 64, 64) == 6



def test_the_cpu_probe_measures_until_a_size_stops_paying_and_takes_the_smallest_near_the_best():
    measured: list[int] = []

    def seconds(table: dict[int, float]):
        def seconds_for(size: int) -> float:
            measured.append(size)
            return table[size]
        return seconds_for

    # 1, 2, 4 images/s, then 8 images in 2 s is no better than 4: it stops there and takes 4.
    rates = probe_rates(seconds({1: 1.0, 2: 1.0, 4: 1.0, 8: 2.0, 16: 4.0}))
    assert measured == [1, 2, 4, 8] and rates == {1: 1.0, 2: 2.0, 4: 4.0, 8: 4.0}
    assert probed_limit(rates) == 4
    # A batch only as fast per image as one alone: 1 per call; a slower 2 stops the probe at once.
    assert probed_limit(probe_rates(seconds({1: 1.0, 2: 2.0, 4: 4.0}))) == 1
    assert probe_rates(seconds({1: 1.0, 2: 2.5})) == {1: 1.0, 2: 0.8}
    # Better by less than 5 %: not worth the bigger call.
    assert probed_limit(probe_rates(seconds({1: 1.0, 2: 1.0, 4: 1.97, 8: 4.0}))) == 2
    assert probed_limit(probe_rates(seconds({1: 1.0, 2: 1.0}), sizes=(1, 2))) == 2  # the largest size tried
    assert probed_limit({}) == 1


def test_the_renderer_probes_with_real_calls_timed_by_its_timer(renderer):
    calls: list[int] = []

    def modelled(images: int, call) -> float:  # runs the real call; reads modelled seconds
        calls.append(images)
        call()
        return 1.0 if images <= 2 else images / 2

    rates = renderer.probe_batch_images("tinyshapes", timer=modelled)
    assert calls == [1, 2, 4] and rates == {1: 1.0, 2: 2.0, 4: 2.0}
    assert BatchLimit("auto").set_probed("tinyshapes", rates) == 2

# -- fairness --


async def test_one_users_ten_jobs_cannot_fill_the_batches_ahead_of_another_users_one():
    gate = threading.Event()
    renderer = BatchingFakeRenderer(gate=gate)
    service = await started(renderer, per_owner_cap=10, batch_images=4)
    alice = [submit(service, f"alice {i}", owner="alice") for i in range(1, 11)]
    bob = submit(service, "bob 1", owner="bob")
    # Bob's job is second in the fair order, so it shares the first call.
    plan = [[job.key for job in batch] for batch in service._plan()]
    assert plan[0] == [alice[0].key, bob.key, alice[1].key, alice[2].key]
    assert service.snapshot().entry(bob.key).position == 1
    gate.set()
    await asyncio.gather(*(job.result() for job in [*alice, bob]))
    assert renderer.calls == [["alice 1", "bob 1", "alice 2", "alice 3"], ["alice 4", "alice 5", "alice 6", "alice 7"],
                              ["alice 8", "alice 9", "alice 10"]]
    await service.close()

    # Bob's job cannot share alice's calls (another size): it renders right after her first one.
    renderer = BatchingFakeRenderer(gate=gate)
    service = await started(renderer, per_owner_cap=10, batch_images=4)
    alice = [submit(service, f"alice {i}", owner="alice") for i in range(1, 11)]
    bob = submit(service, "bob 1", owner="bob", width=128)
    carol = submit(service, "carol 1", owner="carol")  # one job of a third owner may still join alice's
    assert service.snapshot().entry(bob.key).position == 2
    await asyncio.gather(*(job.result() for job in [*alice, bob, carol]))
    assert renderer.calls[:3] == [["alice 1", "carol 1"], ["bob 1"], ["alice 2", "alice 3", "alice 4", "alice 5"]]
    await service.close()


async def test_a_job_too_large_for_the_room_left_is_not_overtaken_by_its_owners_later_jobs():
    renderer = BatchingFakeRenderer()
    service = await started(renderer, per_owner_cap=10, batch_images=4)
    jobs = [submit(service, "alice 1", owner="alice", count=2), submit(service, "bob 1", owner="bob", count=4),
            submit(service, "bob 2", owner="bob"), submit(service, "alice 2", owner="alice")]
    await asyncio.gather(*(job.result() for job in jobs))
    # bob 1 (4 images) does not fit beside alice 1 (2): neither bob 2 nor alice's second job jumps it.
    assert renderer.calls == [["alice 1"], ["bob 1"], ["alice 2", "bob 2"]]
    await service.close()


# -- one call per request; pixels alone vs batched --


async def test_a_count_4_request_renders_as_one_call():
    renderer = BatchingFakeRenderer()
    service = await started(renderer, batch_images=1)  # a job's own images always go together
    result = await submit(service, "four", owner="alice", count=4).result()
    assert renderer.calls == [["four"]]
    assert [image.place for image in result.images] == [BatchPlace(4, index) for index in range(4)]
    await service.close()


async def test_a_count_4_request_renders_as_one_pipeline_call_of_the_real_renderer(renderer):
    pipe = renderer.loaded.txt2img
    calls = []
    original = type(pipe).__call__

    def counting(self, *args, **kwargs):
        calls.append(kwargs["latents"].shape[0])
        return original(self, *args, **kwargs)

    service = await started(renderer, batch_images=1)
    type(pipe).__call__ = counting
    try:
        result = await submit(service, "a red circle", owner="alice", count=4).result()
    finally:
        type(pipe).__call__ = original
    assert calls == [4]
    assert [image.place for image in result.images] == [BatchPlace(4, index) for index in range(4)]
    await service.close()


async def test_a_batched_image_equals_the_same_image_alone_within_the_documented_tolerance(renderer):
    service = await started(renderer, batch_images=4)
    red = submit(service, "a red circle on a blue background", owner="alice", seed=21)
    green = submit(service, "a green square on a white background", owner="bob", seed=22, count=2)
    results = await asyncio.gather(red.result(), green.result())
    batched = [image for result in results for image in result.images]
    assert [image.place for image in batched] == [BatchPlace(3, 0), BatchPlace(3, 1), BatchPlace(3, 2)]
    for result in results:
        for image in result.images:
            request = result.request.replace(seed=image.seed, count=1)
            alone = renderer.render(request).images[0]
            difference = np.abs(pixels(alone.image) - pixels(image.image))
            assert difference.max() <= BATCH_TOLERANCE_MAX and difference.mean() <= BATCH_TOLERANCE_MEAN
            # Rendered again in its recorded place (through the service), it is bit-exact.
            again = await service.submit(request, owner="carol", place=image.place).result()
            assert np.array_equal(pixels(again.images[0].image), pixels(image.image))
            assert again.images[0].place == image.place
    await service.close()


# -- per-job experience in a shared batch --


async def test_each_job_sees_its_own_progress_and_cancelling_one_leaves_the_batch_going():
    gate = threading.Event()
    renderer = BatchingFakeRenderer(gate=gate, steps=4)
    service = await started(renderer, batch_images=4)
    alice = submit(service, "alice", owner="alice")
    bob = submit(service, "bob", owner="bob", count=2)
    seen = {"alice": [], "bob": []}
    alice.add_progress_listener(lambda progress: seen["alice"].append((progress.step, progress.total)))
    bob.add_progress_listener(lambda progress: seen["bob"].append((progress.step, progress.total)))
    await wait_until_rendering(renderer)
    assert [entry.position for entry in service.snapshot().entries] == [0, 0]
    assert service.cancel(alice.key) is True
    with pytest.raises(JobCancelled):
        await alice.result()  # at once: the batch goes on for bob
    assert not bob.done and service.get(alice.key) is None
    assert [entry.key for entry in service.snapshot().entries] == [bob.key]
    gate.set()
    result = await bob.result()
    assert len(result.images) == 2 and bob.succeeded
    assert renderer.calls == [["alice", "bob"]]  # the batch kept its shape: bob's images as recorded
    assert seen == {"alice": [], "bob": [(1, 4), (2, 4), (3, 4), (4, 4)]}
    await service.close()


async def test_cancelling_every_job_of_a_batch_interrupts_it():
    renderer = BatchingFakeRenderer(gate=threading.Event())  # never opened: only the cancel ends it
    service = await started(renderer, batch_images=4)
    jobs = [submit(service, name, owner=name) for name in ("alice", "bob")]
    await wait_until_rendering(renderer)
    assert all(service.cancel(job.key) for job in jobs)
    for job in jobs:
        with pytest.raises(JobCancelled):
            await job.result()
    assert await asyncio.to_thread(renderer.finished.wait, HANG_GUARD_S)
    assert renderer.calls == [] and service.snapshot().entries == []
    await service.close()


async def test_an_out_of_memory_batch_is_split_and_retried_so_no_bystander_fails():
    renderer = BatchingFakeRenderer(oom_above=2)
    service = await started(renderer, batch_images=4)
    jobs = [submit(service, name, owner=name) for name in ("alice", "bob", "carol", "dave")]
    results = await asyncio.gather(*(job.result() for job in jobs))
    assert all(job.succeeded for job in jobs) and all(len(result.images) == 1 for result in results)
    assert renderer.attempts == [["alice", "bob", "carol", "dave"], ["alice", "bob"], ["carol", "dave"]]
    assert service.batch_limit.limit("tinyshapes", 64, 64) == 2  # remembered for this model and size
    more = [submit(service, f"{name} 2", owner=name) for name in ("alice", "bob", "carol")]
    await asyncio.gather(*(job.result() for job in more))
    assert renderer.attempts[3:] == [["alice 2", "bob 2"], ["carol 2"]]  # no second out-of-memory
    await service.close()


async def test_an_out_of_memory_job_renders_its_images_in_smaller_calls_then_fails_alone():
    renderer = BatchingFakeRenderer(oom_above=1)
    service = await started(renderer, batch_images=4)
    grid = submit(service, "grid", owner="alice", count=4)
    result = await grid.result()
    assert [image.place for image in result.images] == [BatchPlace(1, 0)] * 4  # one image per call
    assert renderer.attempts == [["grid"], ["grid"], ["grid"]]  # 4 per call, 2 per call, 1 per call
    await service.close()

    renderer = BatchingFakeRenderer(oom_above=0)  # nothing fits: fails after max_attempts, alone
    service = await started(renderer, batch_images=4)
    with pytest.raises(JobFailed, match="Ran out of GPU memory"):
        await submit(service, "never", owner="alice").result()
    assert len(renderer.attempts) == 2
    await service.close()


async def test_positions_and_etas_follow_the_batches():
    gate = threading.Event()
    renderer = BatchingFakeRenderer(gate=gate, steps=4)
    service = await started(renderer, batch_images=2)
    jobs = [submit(service, name, owner=name) for name in ("alice", "bob", "carol", "dave", "erin")]
    # Nothing timed yet: DEFAULT_SECONDS_PER_STEP per image-step; two 1-image jobs of 4 steps per batch.
    per_batch = 2 * 4 * DEFAULT_SECONDS_PER_STEP
    entries = service.snapshot().entries
    assert [entry.position for entry in entries] == [1, 1, 2, 2, 3]
    assert [entry.eta_s for entry in entries] == [round(per_batch, 1)] * 2 + [round(2 * per_batch, 1)] * 2 + [
        round(2 * per_batch + per_batch / 2, 1)]
    await wait_until_rendering(renderer)
    snapshot = service.snapshot()
    assert [entry.position for entry in snapshot.entries] == [0, 0, 1, 1, 2]
    etas = [entry.eta_s for entry in snapshot.entries]
    assert etas[0] == etas[1] <= etas[2] == etas[3] <= etas[4]
    gate.set()
    await asyncio.gather(*(job.result() for job in jobs))
    # Measured now, per batch size: a batch of 2 and a batch of 1 have each been timed.
    assert set(service.speed.per_image_step) == {1, 2}
    late = [submit(service, f"{name} 2", owner=name) for name in ("alice", "bob", "carol")]
    entries = service.snapshot().entries
    two, one = service.speed.seconds_per_image_step(2), service.speed.seconds_per_image_step(1)
    assert [entry.eta_s for entry in entries] == [round(8 * two, 1)] * 2 + [round(8 * two + 4 * one, 1)]
    await asyncio.gather(*(job.result() for job in late))
    await service.close()


async def test_a_family_that_cannot_share_a_call_renders_job_by_job():
    class Unbatchable(BatchingFakeRenderer):
        def batch_key(self, request):
            return None  # as the real renderer answers for families that draw their own noise

    renderer = Unbatchable()
    service = await started(renderer, batch_images=8)
    jobs = [submit(service, name, owner=name) for name in ("alice", "bob")]
    await asyncio.gather(*(job.result() for job in jobs))
    assert renderer.calls == [["alice"], ["bob"]]
    await service.close()


async def test_auto_on_a_cpu_probes_once_when_images_could_share_a_call(renderer):
    service = await started(renderer, batch_images="auto")
    await submit(service, "alone", owner="alice").result()
    assert service.batch_limit.needs_probe("tinyshapes")  # nothing could share a call: no probe yet
    # "circle": a word the shipped model reads ("bob" alone is refused: tinyshapes cannot spell it).
    jobs = [submit(service, f"{name} circle", owner=name) for name in ("alice", "bob")]
    await asyncio.gather(*(job.result() for job in jobs))
    assert not service.batch_limit.needs_probe("tinyshapes")
    assert service.batch_limit.limit("tinyshapes", 64, 64) >= 1
    await service.close()


async def test_a_wrapper_set_after_construction_renders_batches_too():
    # The bot tests wrap the built service's renderer (service.renderer = Wrapper(...)): the queue asks
    # every renderer for batches, so a wrapper is called exactly as the production renderer is.
    class Wrapper:
        def __init__(self, renderer):
            self._renderer = renderer
            self.seen = []

        def __getattr__(self, name):
            return getattr(self._renderer, name)

        def render_batch(self, requests, **options):
            self.seen.append([request.prompt for request in requests])
            return self._renderer.render_batch(requests, **options)

    service = await started(BatchingFakeRenderer(), batch_images=8)
    wrapper = service.renderer = Wrapper(service.renderer)
    jobs = [submit(service, name, owner=name) for name in ("alice", "bob")]
    await asyncio.gather(*(job.result() for job in jobs))
    assert wrapper.seen == [["alice", "bob"]]
    await service.close()
