"""Fair order and batch forming, as pure functions over the queued jobs (no threads, no renderer, no clock).

Jobs are taken round-robin across owners: the owner served longest ago (never = -1) goes next, so one
user's ten jobs do not starve another user's one, and a newcomer does not wait behind a whole round. A
batch is led by the next job in fair order; queued jobs that can share its pipeline call (equal
`batch_key`) join from the following owners in fair order, up to the batch limit in images, each job whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from ..request import GenerationRequest


class Queued(Protocol):
    """What scheduling reads of a queued job (generation.jobs.Job is one)."""

    owner: str
    sequence: int  # submission order: ties go to the oldest
    batch_key: Hashable | None  # None: renders in a call of its own
    request: GenerationRequest


J = TypeVar("J", bound=Queued)
# Images one call may hold for a lead request (its model and size): the batch limit.
ImagesPerCall = Callable[["GenerationRequest"], int]


class FairQueue(Generic[J]):
    """Per-owner queues and the round-robin bookkeeping: the dispatch number of each owner's latest job."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[J]] = {}  # owner -> their queued jobs, oldest first
        self.last_served: dict[str, int] = {}
        self.dispatched = 0

    def __bool__(self) -> bool:
        return bool(self.queues)

    def add(self, job: J) -> None:
        self.queues.setdefault(job.owner, deque()).append(job)

    def remove(self, job: J) -> None:
        queue = self.queues[job.owner]
        queue.remove(job)
        if not queue:
            del self.queues[job.owner]

    def jobs(self) -> list[J]:
        return [job for queue in self.queues.values() for job in queue]

    def clear(self) -> None:
        self.queues.clear()

    def next_batch(self, images_per_call: ImagesPerCall) -> list[J]:
        """Take the next batch out of the queue."""
        batch, self.dispatched = form_batch(self.queues, self.last_served, self.dispatched, images_per_call)
        return batch

    def plan(self, images_per_call: ImagesPerCall) -> list[list[J]]:
        """The batches queued jobs will render in if nothing else is submitted."""
        queues = {owner: deque(jobs) for owner, jobs in self.queues.items()}
        last_served = dict(self.last_served)
        dispatched = self.dispatched
        batches: list[list[J]] = []
        while queues:
            batch, dispatched = form_batch(queues, last_served, dispatched, images_per_call)
            batches.append(batch)
        return batches

    def fair_order(self) -> list[J]:
        return fair_order(self.queues, self.last_served, self.dispatched)


def take_next(queues: dict[str, deque[J]], last_served: dict[str, int], dispatch_number: int) -> J:
    """Round-robin across owners: the owner served longest ago (or never) goes next."""
    owner = min(queues, key=lambda name: (last_served.get(name, -1), queues[name][0].sequence))
    job = queues[owner].popleft()
    if not queues[owner]:
        del queues[owner]
    last_served[owner] = dispatch_number
    return job


def fair_order(queues: dict[str, deque[J]], last_served: dict[str, int], dispatched: int) -> list[J]:
    """The fair order of the jobs in `queues`, taking nothing out of them."""
    queues = {owner: deque(jobs) for owner, jobs in queues.items()}
    last_served = dict(last_served)
    order: list[J] = []
    while queues:
        order.append(take_next(queues, last_served, dispatched + len(order) + 1))
    return order


def form_batch(queues: dict[str, deque[J]], last_served: dict[str, int], dispatched: int,
               images_per_call: ImagesPerCall) -> tuple[list[J], int]:
    """Take the next batch out of `queues`: the next job in fair order leads; compatible jobs join.

    Joiners come in fair order, up to the batch limit in images, each job whole. Once a job has been
    passed over (it cannot share the call, or does not fit), its owner takes no further part and no
    owner already in the batch adds another job: nothing then overtakes the passed-over job except
    at most one job per other owner, which round-robin would allow anyway. So one owner's ten jobs
    cannot fill the batches ahead of another owner's one.
    """
    dispatched += 1
    lead = take_next(queues, last_served, dispatched)
    batch = [lead]
    key = lead.batch_key
    if key is None or not queues:
        return batch, dispatched
    room = images_per_call(lead.request) - lead.request.count
    if room <= 0:
        return batch, dispatched
    in_batch, blocked, passed_over = {lead.owner}, set(), False
    for job in fair_order(queues, last_served, dispatched):
        if room <= 0:
            break
        if job.owner in blocked or (passed_over and job.owner in in_batch):
            continue
        if job.batch_key == key and job.request.count <= room:
            batch.append(job)
            in_batch.add(job.owner)
            room -= job.request.count
        else:
            passed_over = True
            blocked.add(job.owner)
    for job in batch[1:]:
        dispatched += 1
        queue = queues[job.owner]
        queue.remove(job)
        if not queue:
            del queues[job.owner]
        last_served[job.owner] = dispatched
    return batch, dispatched


def retry_plan(jobs: list[J], attempt: int, images_per_call: int | None, images: int,
               max_attempts: int) -> tuple[str, list[tuple[list[J], int, int | None]]] | None:
    """After an out-of-memory error: (what happens next, [(jobs, attempt, images per call)]), or None."""
    if len(jobs) > 1:
        half = len(jobs) // 2
        return (f"splitting the batch of {images} images in two",
                [(jobs[:half], 1, images_per_call), (jobs[half:], 1, images_per_call)])
    per_call = images_per_call or jobs[0].request.count
    if per_call > 1:
        return f"retrying {per_call // 2} image(s) per call", [(jobs, 1, per_call // 2)]
    if attempt < max_attempts:
        return f"retrying (attempt {attempt + 1} of {max_attempts})", [(jobs, attempt + 1, images_per_call)]
    return None
