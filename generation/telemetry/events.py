"""A job's state changes, told once: the metric moves and the structured log line is written together.

Call sites (bot intake, the render queues, the worker) make one call per event; the JSON log line carries
the job id, the owner hash, the model and the transition, so `grep '"job_id": 42'` follows one job.
`metrics` may be None where a component was built without one (library use, older tests): only the
log line is written then.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from .logs import log_transition
from .metrics import Metrics, Outcome

if TYPE_CHECKING:
    from ..jobs import QueueSnapshot

log = logging.getLogger("imagine.jobs")

UNKNOWN_MODEL = "unknown"


class JobRow(Protocol):
    """What these events read of a recorded job (storage's GenerationRecord has it all)."""

    @property
    def id(self) -> int: ...

    @property
    def owner_id(self) -> int: ...

    @property
    def model(self) -> str | None: ...

    @property
    def created_at(self) -> datetime: ...


def seconds_since(moment: datetime | None) -> float:
    """Seconds from `moment` (naive values are UTC, as SQLite returns them) to now; 0 when unknown."""
    if moment is None:
        return 0.0
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return max((datetime.now(UTC) - aware).total_seconds(), 0.0)


def job_queued(metrics: Metrics | None, job: JobRow) -> None:
    if metrics is not None:
        metrics.job_queued()
    log_transition(log, job.id, job.owner_id, job.model, None, "queued")


def job_started(metrics: Metrics | None, job: JobRow, *, attempt: int = 1, worker_id: str | None = None) -> None:
    wait_s = seconds_since(job.created_at)
    if metrics is not None:
        metrics.job_started(job.model or UNKNOWN_MODEL, wait_s, attempt=attempt)
    log_transition(log, job.id, job.owner_id, job.model, "queued", "running", wait_s=round(wait_s, 3),
                   attempt=attempt, worker_id=worker_id)


def job_finished(metrics: Metrics | None, job: JobRow, outcome: Outcome, *, reason: str | None = None,
                 worker_id: str | None = None) -> None:
    if metrics is not None:
        metrics.job_finished(job.model or UNKNOWN_MODEL, outcome)
    log_transition(log, job.id, job.owner_id, job.model, "running", outcome.value,
                   duration_s=round(seconds_since(job.created_at), 3), reason=reason, worker_id=worker_id)


def queue_seen(metrics: Metrics | None, snapshot: QueueSnapshot) -> None:
    """Queue depth and jobs rendering, from a queue snapshot (position 0 is rendering)."""
    if metrics is not None:
        running = sum(1 for entry in snapshot.entries if entry.position == 0)
        metrics.set_queue(len(snapshot.entries) - running, running)
