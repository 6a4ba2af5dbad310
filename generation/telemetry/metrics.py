"""Every metric of the bot, declared once: the gateway and each render worker record into a `Metrics`.

Each process builds one `Metrics` (its own `CollectorRegistry`, so tests get fresh ones) and records events
through the small typed methods below: one line per event where it happens. Labels stay low-cardinality:
the configured model name, a state, an outcome, a reason from a fixed list — never a prompt or a user id.

Rates are not gauges: images/s and steps/s are `rate()` of the `*_total` counters over the scrape window
(`rate(imagine_images_rendered_total[5m])`), so they stay exact however often Prometheus scrapes.
"""

from __future__ import annotations

from enum import Enum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "Outcome", "Refusal", "Role"]

NAMESPACE = "imagine"
# Seconds a job waits in the queue: from a blink to a long burst behind other owners.
WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# Seconds per image: tiny CPU models in tens of milliseconds up to large models on small GPUs.
RENDER_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
# Seconds to load a model: cached small ones to multi-GB checkpoints from disk.
LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
# Batch sizes are recorded as labels: a few fixed values (the bot batches up to a small limit).
MAX_BATCH_LABEL = 8


class Role(str, Enum):
    """Which process serves the metrics (the `role` of `imagine_process_info`)."""

    GATEWAY = "gateway"
    WORKER = "worker"
    BOT = "bot"  # gateway and in-process worker in one process


class Outcome(str, Enum):
    """How a job ended."""

    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Refusal(str, Enum):
    """Why a request was refused before it was queued."""

    VALIDATION = "validation"
    CAPS = "caps"
    QUOTA = "quota"
    BANNED_WORD = "banned_word"
    CHANNEL = "channel"
    NSFW = "nsfw"


def batch_label(batch_size: int) -> str:
    """The batch size as a label, capped so a misconfiguration cannot explode the series."""
    return str(batch_size) if 1 <= batch_size <= MAX_BATCH_LABEL else f"{MAX_BATCH_LABEL}+"


class Metrics:
    """The metrics of one process, in their own registry."""

    def __init__(self, role: Role = Role.BOT, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.role = role
        self._loaded_model: str | None = None
        reg = self.registry
        self.process_info = Gauge(f"{NAMESPACE}_process_info", "This process's role (always 1).", ["role"],
                                  registry=reg)
        self.process_info.labels(role.value).set(1)
        # ---- jobs and the queue
        self.job_transitions = Counter(f"{NAMESPACE}_job_transitions_total",
                                       "Job state changes (queued, running, done, failed, cancelled).",
                                       ["state"], registry=reg)
        self.jobs_finished = Counter(f"{NAMESPACE}_jobs_finished_total", "Jobs that ended, by model and outcome.",
                                     ["model", "outcome"], registry=reg)
        self.queue_depth = Gauge(f"{NAMESPACE}_queue_depth", "Jobs waiting in the queue (not yet rendering).",
                                 registry=reg)
        self.jobs_running = Gauge(f"{NAMESPACE}_jobs_running", "Jobs rendering now.", registry=reg)
        self.queue_wait = Histogram(f"{NAMESPACE}_queue_wait_seconds", "Seconds from queued to rendering.",
                                    ["model"], buckets=WAIT_BUCKETS, registry=reg)
        # ---- rendering
        self.render_per_image = Histogram(f"{NAMESPACE}_render_seconds_per_image",
                                          "Render seconds of one pipeline call divided by its images.",
                                          ["model", "batch_size"], buckets=RENDER_BUCKETS, registry=reg)
        self.images_rendered = Counter(f"{NAMESPACE}_images_rendered_total",
                                       "Images rendered (rate() of it is images/s).", ["model"], registry=reg)
        self.steps_done = Counter(f"{NAMESPACE}_denoising_steps_total",
                                  "Denoising steps times images in the call (rate() of it is steps/s).",
                                  ["model"], registry=reg)
        self.model_load = Histogram(f"{NAMESPACE}_model_load_seconds", "Seconds to load a model.", ["model"],
                                    buckets=LOAD_BUCKETS, registry=reg)
        self.model_loaded = Gauge(f"{NAMESPACE}_model_loaded", "1 for the model loaded now.", ["model"],
                                  registry=reg)
        # ---- delivery, refusals
        self.delivery_attempts = Counter(f"{NAMESPACE}_delivery_attempts_total",
                                         "Attempts to post a finished job, by result (posted, retry, failed).",
                                         ["result"], registry=reg)
        self.delivery_fallbacks = Counter(f"{NAMESPACE}_delivery_fallbacks_total",
                                          "Posts that fell back from the interaction to a channel message.",
                                          registry=reg)
        self.refusals = Counter(f"{NAMESPACE}_refusals_total", "Requests refused before queueing, by reason.",
                                ["reason"], registry=reg)
        # ---- shared queue, database
        self.lease_expiries = Counter(f"{NAMESPACE}_lease_expiries_total",
                                      "Shared-queue leases that ran out, by what became of the job "
                                      "(requeued, failed).", ["result"], registry=reg)
        self.reclaims = Counter(f"{NAMESPACE}_reclaims_total",
                                "Claims of a job that another worker had claimed before (attempt > 1).",
                                registry=reg)
        self.claim_seconds = Histogram(f"{NAMESPACE}_claim_seconds", "Seconds one shared-queue claim took.",
                                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
                                       registry=reg)
        self.database_errors = Counter(f"{NAMESPACE}_database_errors_total",
                                       "Database operations that raised, by operation.", ["operation"],
                                       registry=reg)
        # The fixed label values exist from the start (at 0), so rate() and increase() have a baseline.
        for state in ("queued", "running", *(outcome.value for outcome in Outcome)):
            self.job_transitions.labels(state)
        for reason in Refusal:
            self.refusals.labels(reason.value)
        for result in ("requeued", "failed"):
            self.lease_expiries.labels(result)

    # ---- recording: one call per event ------------------------------------------------------

    def job_queued(self, depth: int | None = None) -> None:
        self.job_transitions.labels("queued").inc()
        if depth is not None:
            self.queue_depth.set(depth)

    def job_started(self, model: str, wait_s: float, *, attempt: int = 1) -> None:
        """A job began rendering after `wait_s` in the queue (a claim with `attempt` > 1 is a re-claim)."""
        self.job_transitions.labels("running").inc()
        self.queue_wait.labels(model).observe(max(wait_s, 0.0))
        if attempt > 1:
            self.reclaims.inc()

    def job_finished(self, model: str, outcome: Outcome) -> None:
        self.job_transitions.labels(outcome.value).inc()
        self.jobs_finished.labels(model, outcome.value).inc()

    def set_queue(self, queued: int, running: int) -> None:
        self.queue_depth.set(queued)
        self.jobs_running.set(running)

    def batch_rendered(self, model: str, images: int, steps: int, seconds: float) -> None:
        """One pipeline call rendered `images` images of `steps` steps in `seconds`."""
        if images <= 0:
            return
        self.render_per_image.labels(model, batch_label(images)).observe(max(seconds, 0.0) / images)
        self.images_rendered.labels(model).inc(images)
        self.steps_done.labels(model).inc(images * max(steps, 0))

    def model_load_finished(self, model: str, seconds: float) -> None:
        self.model_load.labels(model).observe(max(seconds, 0.0))
        if self._loaded_model is not None and self._loaded_model != model:
            self.model_loaded.labels(self._loaded_model).set(0)
        self.model_loaded.labels(model).set(1)
        self._loaded_model = model

    def delivery_attempt(self, result: str) -> None:
        """`result`: posted, retry or failed."""
        self.delivery_attempts.labels(result).inc()

    def delivery_fallback(self) -> None:
        self.delivery_fallbacks.inc()

    def refused(self, reason: Refusal) -> None:
        self.refusals.labels(reason.value).inc()

    def lease_expired(self, requeued: bool) -> None:
        self.lease_expiries.labels("requeued" if requeued else "failed").inc()

    def claimed(self, seconds: float) -> None:
        self.claim_seconds.observe(max(seconds, 0.0))

    def database_error(self, operation: str) -> None:
        """`operation`: a fixed name of the call site (claim, mark_done, create_generation…), never a value."""
        self.database_errors.labels(operation).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of everything recorded."""
        return generate_latest(self.registry)
