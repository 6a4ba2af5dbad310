"""What the render queue needs from a renderer: generation.renderer.Renderer, or a fake in tests.

Every method is required (mypy checks it where a renderer is handed to the queue), so a test renderer
goes through the same calls as production: jobs always render through `render_batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..models import ModelSource
    from ..families import ModelInfo
    from ..request import BatchPlace, GenerationRequest, Progress, RenderResult


class Device(Protocol):
    @property
    def type(self) -> str: ...  # "cpu", "cuda", "mps" (a torch.device)


class RendererLike(Protocol):
    @property
    def device(self) -> Device: ...

    def render_batch(self, requests: list[GenerationRequest], *,
                     on_progress: Callable[[int, Progress], None] | None = None,
                     is_cancelled: Callable[[], bool] | None = None, images_per_call: int | None = None,
                     place: BatchPlace | None = None) -> list[RenderResult]:
        """Render `requests` in one pipeline call (their images `images_per_call` at a time when given).
        `on_progress(index into requests, Progress)`; RenderCancelled once `is_cancelled()`; RenderError."""
        ...

    def batch_key(self, request: GenerationRequest, /) -> Hashable | None:
        """What requests sharing a call need equal (None: it renders in a call of its own)."""
        ...

    def probe_batch_images(self, model: str, /) -> dict[int, float]:
        """{images per call: images/s}, measured (BATCH_IMAGES=auto on a CPU)."""
        ...

    def load(self, model: str, /) -> float: ...  # seconds it took

    def native_size(self, model: str, /) -> int: ...

    def tokenizer(self, model: str, /) -> Any: ...  # None: no prompt-length check

    def check_request(self, request: GenerationRequest, /) -> None:
        """RequestError when the model's family cannot render the request (a sampler it lacks, ...)."""
        ...

    def defaults(self, model: str, /) -> dict[str, Any]: ...  # request fields for the model when nobody sets them

    def model_info(self, model: str, /) -> ModelInfo: ...

    def source(self, model: str, /) -> ModelSource: ...

    def lora_names(self) -> list[str]: ...

    def lora_hashes(self, prompt: str, /) -> dict[str, str]: ...  # {LoRA name: A1111 short hash} (PNG metadata)
