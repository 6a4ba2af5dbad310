"""The shared queue: render workers on several machines claim jobs from PostgreSQL (session-level functions).

A claim takes the next queued job in the fair order of the in-process service (round-robin across owners:
the owner whose latest job was claimed longest ago goes first, then that owner's oldest job), preferring the
model the worker has loaded, in one transaction: `pg_advisory_xact_lock` makes claims take turns (so the
round-robin counter in `owner_turns` is exact), `SELECT … FOR UPDATE SKIP LOCKED` passes over rows another
transaction holds (a cancel in flight). The claim is a lease (`lease_owner`, `lease_expires_at` on the row,
measured on the database's clock) that heartbeats renew; an expired lease puts the job back in the queue with
its attempt counted, or fails it after `max_attempts` starts, as `recover()` does for the one-process bot.
Finishing checks the lease (`repository.mark_done(..., worker_id=)`): exactly one worker finishes a job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Generation, GenerationKind, GenerationStatus, OwnerTurn, Worker
from .repository import S, _transition, lost_lease_reason, with_images

log = logging.getLogger(__name__)

# Any fixed number (another than the migration lock's): claims take turns on it.
CLAIM_LOCK_KEY = 0x1A61_7E_C1A


@dataclass(frozen=True)
class WorkerRecord:
    id: str
    host: str
    models: list[str]
    max_size: int
    loaded_model: str | None
    current_jobs: list[int]
    jobs_done: int
    images_done: int
    render_s: float
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None

    @classmethod
    def from_row(cls, row: Worker) -> WorkerRecord:
        return cls(id=row.id, host=row.host, models=list(row.models or []), max_size=row.max_size,
                   loaded_model=row.loaded_model, current_jobs=list(row.current_jobs or []),
                   jobs_done=row.jobs_done, images_done=row.images_done, render_s=row.render_s,
                   started_at=row.started_at, heartbeat_at=row.heartbeat_at, stopped_at=row.stopped_at)

    @property
    def images_per_s(self) -> float:
        return self.images_done / self.render_s if self.render_s > 0 else 0.0


@dataclass(frozen=True)
class QueuedJob:
    """A queued or running job of the shared queue as /queue shows it (no parameters but its size of work)."""

    id: int
    owner_id: int
    status: GenerationStatus
    images: int
    steps: int
    lease_owner: str | None
    started_at: datetime | None


def is_postgresql(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock (every machine's leases are measured on it, whatever their own clocks say); the
    moment of the call, not the transaction's start, so claims taken in turn are stamped in turn."""
    now = await session.scalar(select(func.clock_timestamp()))
    assert isinstance(now, datetime)
    return now


async def expire_leases(session: AsyncSession, max_attempts: int) -> tuple[list[Generation], list[Generation]]:
    """Running jobs whose lease ran out (their worker died or lost the database): (queued again, failed now)."""
    now = await db_now(session)
    expired = (await session.scalars(
        with_images(select(Generation).where(Generation.status == S.RUNNING.value,
                                             Generation.lease_owner.is_not(None),
                                             Generation.lease_expires_at < now))
        .order_by(Generation.id).with_for_update(skip_locked=True, of=Generation))).all()
    requeued, failed = [], []
    for row in expired:
        if row.attempts < max_attempts:
            _transition(row, S.QUEUED, f" (lease of {row.lease_owner} expired after {row.attempts} attempt(s))")
            row.started_at = None
            requeued.append(row)
        else:
            # The worker went silent, not the request's fault (a renderer crash on it is recover()'s case).
            reason = lost_lease_reason(row.attempts)
            _transition(row, S.FAILED, f": {reason} (lease of {row.lease_owner} expired)")
            row.failure_reason = reason
            row.finished_at = now
            failed.append(row)
        row.lease_expires_at = None
    await session.flush()
    return requeued, failed


# Owners in the walk have distinct turns: claim numbers (1, 2, …) once served; before that, a never-served
# owner's turn is its first queued job's id minus NEWCOMER_BASE (set by revision 0011's trigger): newcomers
# go first, in the order they came. An owner with nothing queued is set aside (turn minus IDLE_OFFSET, below
# the walk) so the walk does not step over every owner it ever served; the trigger adds IDLE_OFFSET back
# when one of its jobs is queued, which puts the owner back in its place.
NEWCOMER_BASE = 2**39
IDLE_OFFSET = 2**40
MAX_SKIPPED = 8  # candidates held by another transaction (a cancel in flight) passed over in one claim

# The first owner in turn order with a job this worker can render, and that job (the loaded model first,
# then the oldest): owners read from ix_owner_turns_last_claim, each one's queued jobs from
# ix_generations_status_owner_id_id; the walk stops at the first owner that has one. A reference given by
# URL is held back until the gateway stored its picture (0010).
_NEXT_JOB_SQL = text("""
SELECT job.id, turn.last_claim FROM owner_turns AS turn
CROSS JOIN LATERAL (
    SELECT g.id, CASE WHEN g.model = :loaded_model THEN 0 ELSE 1 END AS preferred
    FROM generations AS g
    WHERE g.status = 'queued' AND g.owner_id = turn.owner_id AND g.deleted_at IS NULL
      AND g.init_image_url IS NULL AND g.kind <> 'pick' AND g.model = ANY(:models)
      AND (g.sref_url IS NULL OR g.sref_path IS NOT NULL) AND (g.oref_url IS NULL OR g.oref_path IS NOT NULL)
      AND coalesce(g.width, 0) <= :max_size AND coalesce(g.height, 0) <= :max_size AND g.id <> ALL(:skipped)
    ORDER BY preferred, g.id LIMIT 1) AS job
WHERE turn.last_claim >= :floor
ORDER BY turn.last_claim LIMIT 1
""")
_IDLE_BELOW_SQL = text("""
SELECT turn.owner_id FROM owner_turns AS turn
WHERE turn.last_claim >= :floor AND turn.last_claim < :below
  AND NOT EXISTS (SELECT 1 FROM generations AS g WHERE g.status = 'queued' AND g.owner_id = turn.owner_id
                  AND g.deleted_at IS NULL)
FOR UPDATE SKIP LOCKED
""")
# A second statement (a fresh snapshot) under those row locks: a job queued meanwhile keeps its owner.
_SET_ASIDE_SQL = text("""
UPDATE owner_turns AS turn SET last_claim = turn.last_claim - :offset
WHERE turn.owner_id = ANY(:owners)
  AND NOT EXISTS (SELECT 1 FROM generations AS g WHERE g.status = 'queued' AND g.owner_id = turn.owner_id
                  AND g.deleted_at IS NULL)
""")
# The owner's turn becomes the newest claim number (max via ix_owner_turns_last_claim), in one round trip.
_TAKE_TURN_SQL = text("""
INSERT INTO owner_turns (owner_id, last_claim)
VALUES (:owner_id, (SELECT greatest(coalesce(max(last_claim), 0), 0) + 1 FROM owner_turns))
ON CONFLICT (owner_id) DO UPDATE SET last_claim = excluded.last_claim
""")


async def _next_candidate(session: AsyncSession, *, models: Sequence[str], max_size: int,
                          loaded_model: str | None, skipped: list[int]) -> tuple[int, int] | None:
    """The id of the next job in fair order and its owner's turn, without locking it (None: nothing to take)."""
    values = {"models": list(models), "max_size": max_size, "loaded_model": loaded_model, "skipped": skipped,
              "floor": -NEWCOMER_BASE}
    row = (await session.execute(_NEXT_JOB_SQL, values)).first()
    return (int(row[0]), int(row[1])) if row is not None else None


async def _set_aside_idle_owners(session: AsyncSession, below: int | None) -> None:
    """Owners walked over (turn below the winner's; all when nothing was found) with nothing queued leave the
    walk. Rows an intake holds (its job not committed yet) are skipped: the next claim looks again."""
    limit = below if below is not None else IDLE_OFFSET
    owners = list((await session.execute(_IDLE_BELOW_SQL, {"floor": -NEWCOMER_BASE, "below": limit})).scalars())
    if owners:
        await session.execute(_SET_ASIDE_SQL, {"offset": IDLE_OFFSET, "owners": owners})


async def claim(session: AsyncSession, worker_id: str, *, models: Sequence[str], max_size: int,
                loaded_model: str | None, lease_s: float, limit: int = 1,
                max_attempts: int = 2) -> tuple[list[Generation], list[Generation]]:
    """Claim up to `limit` jobs for `worker_id` in fair order: (claimed, failed by expired leases on the way).

    Only jobs this worker can render: its models, sides up to `max_size`, no init image or reference still
    to download, no picks (those copy a file: the gateway does them). Each claimed job is running, its attempt
    counted. The order is read from indexes (revision 0011): a few owners' rows and one owner's jobs, whatever
    the length of the queue. Owners take turns (never-served ones first, by arrival); the loaded model is
    preferred among the jobs of the owner whose turn it is.
    """
    await session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
    _, failed = await expire_leases(session, max_attempts)
    now = await db_now(session)
    claimed: list[Generation] = []
    skipped: list[int] = []
    while len(claimed) < limit:
        candidate = await _next_candidate(session, models=models, max_size=max_size, loaded_model=loaded_model,
                                          skipped=skipped)
        await _set_aside_idle_owners(session, below=candidate[1] if candidate is not None else None)
        if candidate is None:
            break
        job_id = candidate[0]
        row = await session.scalar(with_images(
            select(Generation).where(Generation.id == job_id, Generation.status == S.QUEUED.value,
                                     Generation.deleted_at.is_(None))
            .with_for_update(skip_locked=True, of=Generation)))
        if row is None:  # held by another transaction (a cancel in flight), or changed since: the next one
            skipped.append(job_id)
            if len(skipped) > MAX_SKIPPED:
                break
            continue
        row.attempts += 1
        _transition(row, S.RUNNING, f" (attempt {row.attempts}, worker {worker_id})")
        row.started_at = now
        row.lease_owner = worker_id
        row.lease_expires_at = now + timedelta(seconds=lease_s)
        await session.execute(_TAKE_TURN_SQL, {"owner_id": row.owner_id})
        await session.flush()
        claimed.append(row)
    return claimed, failed


async def renew(session: AsyncSession, worker_id: str, generation_ids: Sequence[int], lease_s: float) -> set[int]:
    """Extend this worker's leases; returns the ids it still holds (the others were cancelled, or expired and
    taken by another worker: stop rendering them)."""
    if not generation_ids:
        return set()
    now = await db_now(session)
    result = await session.execute(
        update(Generation)
        .where(Generation.id.in_(list(generation_ids)), Generation.lease_owner == worker_id,
               Generation.status == S.RUNNING.value)
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(Generation.id)
        .execution_options(synchronize_session=False))
    return {int(generation_id) for generation_id in result.scalars()}


# ---- workers -------------------------------------------------------------------------------


async def register_worker(session: AsyncSession, worker_id: str, *, host: str, models: Sequence[str],
                          max_size: int) -> Worker:
    now = await db_now(session)
    row = await session.get(Worker, worker_id, with_for_update=True)
    if row is None:
        row = Worker(id=worker_id, jobs_done=0, images_done=0, render_s=0.0)
        session.add(row)
    row.host, row.models, row.max_size = host, list(models), max_size
    row.loaded_model, row.current_jobs = None, []
    row.started_at = row.heartbeat_at = now
    row.stopped_at = None
    await session.flush()
    return row


async def worker_heartbeat(session: AsyncSession, worker_id: str, *, loaded_model: str | None,
                           current_jobs: Sequence[int], jobs_done: int = 0, images_done: int = 0,
                           render_s: float = 0.0, stopped: bool = False) -> None:
    """Record what the worker renders now; add the work it finished since the last heartbeat."""
    now = await db_now(session)
    await session.execute(
        update(Worker).where(Worker.id == worker_id).values(
            loaded_model=loaded_model, current_jobs=list(current_jobs), heartbeat_at=now,
            jobs_done=Worker.jobs_done + jobs_done, images_done=Worker.images_done + images_done,
            render_s=Worker.render_s + render_s, stopped_at=now if stopped else None))


async def list_workers(session: AsyncSession) -> list[Worker]:
    return list((await session.scalars(select(Worker).order_by(Worker.id))).all())


async def shared_queue(session: AsyncSession) -> list[QueuedJob]:
    """Every queued and running job: running ones first, then queued ones in the order claims take them
    (round-robin across owners, as `claim` does; model preferences aside)."""
    rows = (await session.execute(
        select(Generation.id, Generation.owner_id, Generation.status, Generation.count.label("images"),
               Generation.num_inference_steps, Generation.lease_owner, Generation.started_at,
               func.coalesce(OwnerTurn.last_claim, -1).label("turn"))
        .outerjoin(OwnerTurn, OwnerTurn.owner_id == Generation.owner_id)
        .where(Generation.status.in_([S.QUEUED.value, S.RUNNING.value]), Generation.deleted_at.is_(None))
        .order_by(Generation.id))).all()
    running = [row for row in rows if row.status is S.RUNNING]
    queues: dict[int, list[Any]] = {}
    turns: dict[int, int] = {}
    for row in rows:
        if row.status is S.QUEUED:
            queues.setdefault(row.owner_id, []).append(row)
            turns[row.owner_id] = row.turn
    ordered = list(running)
    number = max([0, *turns.values()])
    while queues:
        owner = min(queues, key=lambda name: (turns[name], queues[name][0].id))
        ordered.append(queues[owner].pop(0))
        if not queues[owner]:
            del queues[owner]
        number += 1
        turns[owner] = number
    return [QueuedJob(id=row.id, owner_id=row.owner_id, status=row.status, images=row.images or 1,
                      steps=row.num_inference_steps or 1, lease_owner=row.lease_owner, started_at=row.started_at)
            for row in ordered]
