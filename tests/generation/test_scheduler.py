"""The pure scheduler (generation.queue.scheduler): fair order, batch forming and the out-of-memory plan,
on plain records: no threads, no renderer, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Hashable

from generation.queue.scheduler import FairQueue, retry_plan
from generation.request import GenerationRequest

SEQUENCE = iter(range(1, 10_000))


@dataclass(eq=False)
class Queued:
    owner: str
    name: str
    count: int = 1
    batch_key: Hashable | None = "same"
    sequence: int = field(default_factory=lambda: next(SEQUENCE))

    @property
    def request(self) -> GenerationRequest:
        return GenerationRequest(self.name, count=self.count, width=64, height=64, seed=1)


def queue_of(*jobs: Queued) -> FairQueue[Queued]:
    queue: FairQueue[Queued] = FairQueue()
    for job in jobs:
        queue.add(job)
    return queue


def names(batches: list[list[Queued]]) -> list[list[str]]:
    return [[job.name for job in batch] for batch in batches]


def test_owners_take_turns_and_a_newcomer_does_not_wait_a_whole_round() -> None:
    queue = queue_of(*(Queued("alice", f"a{n}", batch_key=None) for n in range(3)), Queued("bob", "b0", batch_key=None))
    assert [job.name for job in queue.fair_order()] == ["a0", "b0", "a1", "a2"]
    assert names([queue.next_batch(lambda request: 1)]) == [["a0"]]
    queue.add(Queued("carol", "c0", batch_key=None))
    assert [job.name for job in queue.fair_order()] == ["b0", "c0", "a1", "a2"]


def test_batches_join_compatible_jobs_in_fair_order_up_to_the_limit_in_images() -> None:
    queue = queue_of(Queued("alice", "a0"), Queued("alice", "a1"), Queued("bob", "b0", count=2), Queued("carol", "c0"))
    assert names(queue.plan(lambda request: 4)) == [["a0", "b0", "c0"], ["a1"]]
    assert names(queue.plan(lambda request: 2)) == [["a0", "c0"], ["b0"], ["a1"]]
    assert queue.jobs()  # planning takes nothing out


def test_a_passed_over_job_is_overtaken_by_at_most_one_job_per_other_owner() -> None:
    queue = queue_of(Queued("alice", "a0"), Queued("bob", "b0", batch_key="other"), Queued("alice", "a1"),
                     Queued("carol", "c0"), Queued("carol", "c1"))
    assert names(queue.plan(lambda request: 8)) == [["a0", "c0"], ["b0"], ["a1", "c1"]]


def test_out_of_memory_splits_the_batch_then_the_images_then_retries() -> None:
    two = [Queued("alice", "a"), Queued("bob", "b")]
    what, parts = retry_plan(two, 1, None, 2, max_attempts=2) or ("", [])
    assert what == "splitting the batch of 2 images in two" and [(len(p), a, n) for p, a, n in parts] == [(1, 1, None)] * 2
    grid = [Queued("alice", "grid", count=4)]
    assert retry_plan(grid, 1, None, 4, max_attempts=2) == ("retrying 2 image(s) per call", [(grid, 1, 2)])
    one = [Queued("alice", "one")]
    assert retry_plan(one, 1, None, 1, max_attempts=2) == ("retrying (attempt 2 of 2)", [(one, 2, None)])
    assert retry_plan(one, 2, None, 1, max_attempts=2) is None
