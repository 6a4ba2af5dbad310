"""The render queue as the bot sees it: one interface, two peer implementations.

- `generation.queue.local.LocalQueue`: renders in this process (the fair in-process scheduler).
- `generation.queue.shared.SharedQueue`: render workers anywhere claim jobs from PostgreSQL
  (`generation.queue.worker.RenderWorker`); the gateway follows each job's row.

Both validate requests the same way (the renderer's rules, the operator's limits), admit them under the
same caps (`admission`), and finish renders the same way (`finish`). The app picks one, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from storage import GenerationRecord

    from ..jobs import QueueEntry, QueueSnapshot
    from ..request import GenerationRequest, Limits, Progress
    from .admission import Reservation


class JobWatcher(Protocol):
    """What the caller of `RenderQueue.render` hears about its job while it waits."""

    async def queued(self, entry: QueueEntry | None) -> None:
        """The job is in the queue (at `entry`'s place); called once, first."""
        ...

    def started(self) -> None:
        """The job left the queue for a render (not called by the shared queue, which only follows rows)."""
        ...

    def progress(self, progress: Progress) -> None:
        """A denoising step (with a preview now and then); called on the event loop."""
        ...


class RenderQueue(Protocol):
    @property
    def limits(self) -> Limits: ...

    @property
    def per_owner_cap(self) -> int: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    # -- requests: validation and defaults (the renderer's rules within the operator's limits) --

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """The request validated (RequestError), with its size and seeds chosen."""
        ...

    def model_defaults(self, model: str) -> dict[str, Any]: ...

    def native_size(self, model: str) -> int: ...

    def size_multiple(self, model: str) -> int: ...

    def picture_limits(self, model: str) -> Limits:
        """The limits an edit's canvas (Zoom Out, Pan, Make Square) of a `model` picture is shrunk to fit."""
        ...

    def lora_names(self) -> list[str]: ...

    def instruction_pictures(self, model: str) -> int:
        """Pictures per instruction edit (edited one plus references); 0: the model does not edit by instruction."""
        ...

    def model_label(self, model: str) -> str: ...

    def skipped_words(self, model: str, prompt: str) -> list[str]:
        """Words of `prompt` the model cannot read, so its picture went without them (blocking: a thread)."""
        ...

    # -- jobs --

    def reserve(self, owner: str, cap: int | None = None) -> Reservation:
        """Room for one job of `owner`, or QueueFull saying when room is expected."""
        ...

    async def render(self, record: GenerationRecord, request: GenerationRequest, reservation: Reservation | None,
                     watcher: JobWatcher, *, classify: bool) -> GenerationRecord:
        """Render a recorded job (prepared `request`) and store its images: the record, done. Raises
        JobCancelled or JobFailed. `classify`: run NSFW_CLASSIFIER (a channel that is not age-restricted)."""
        ...

    def cancel(self, key: str) -> bool:
        """Cancel a queued or rendering job; False if it is unknown here or finished."""
        ...

    def snapshot(self) -> QueueSnapshot: ...

    def prompt(self, key: str) -> str | None:
        """The prompt of a queued or rendering job, where this queue knows it."""
        ...
