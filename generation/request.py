"""What to render (`GenerationRequest`), the operator's `Limits`, and what a render gives back.

Field names follow diffusers' pipeline arguments. The rules a request must follow are in
generation.validation (above this module and generation.editing).
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any

import PIL.Image

from .parameters import param, parameters_of

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 1000
SEED_RANGE = MAX_SEED + 1
MAX_GUIDANCE = 30.0


class RequestError(ValueError):
    """A request problem a user can fix; the message is shown to them as is."""


class QueueFull(RequestError):
    """The render queue (for this user or overall) has no room for another job."""


class RenderCancelled(Exception):
    """The request was cancelled while rendering."""


class RenderError(Exception):
    """A render failed for a reason worth showing to the user; `retryable` for transient ones (OOM)."""

    def __init__(self, reason: str, *, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Limits:
    """Operator-configured bounds for requests."""

    min_size: int = 32
    max_size: int = 1024
    max_pixels: int = 1024 * 1024
    max_steps: int = 50
    max_count: int = 4
    models: tuple[str, ...] = ("tinyshapes",)


@dataclass(frozen=True)
class GenerationRequest:
    """One render request: `count` images that share everything but their seeds.

    Image i uses seed `(seed + i) mod 2**32`, so every image can be rendered again on its own with
    count=1 and its recorded seed. Variations (variation_strength > 0) follow A1111's subseeds
    instead: every image keeps `seed` (the parent's) and image i uses `variation_seed + i`.
    """

    prompt: str = field(metadata=param(
        "prompt", "Prompt", "What to draw; inline flags work too, e.g. --ar 16:9 --seed 42 --no blur", "text",
        bounds=(1, MAX_PROMPT_CHARS)))
    negative_prompt: str = field(default="", metadata=param(
        "negative_prompt", "Negative prompt", "What to keep out of the image", "text", flag="--no",
        bounds=(1, MAX_PROMPT_CHARS), member_default=True))
    # None: the model's native size, filled in by GenerationService.prepare
    width: int | None = field(default=None, metadata=param(
        "width", "Width", "Width in pixels (a multiple of 8)", "int", flag="--width", bounds=("min_size", "max_size"),
        member_default=True))
    height: int | None = field(default=None, metadata=param(
        "height", "Height", "Height in pixels (a multiple of 8)", "int", flag="--height", bounds=("min_size", "max_size"),
        member_default=True))
    num_inference_steps: int = field(default=20, metadata=param(
        "steps", "Steps", "Denoising steps: more is slower and finer", "int", flag="--steps",
        bounds=(1, "max_steps"), member_default=True))
    guidance_scale: float = field(default=5.0, metadata=param(
        "guidance", "Guidance", "How closely to follow the prompt (CFG scale)", "float", flag="--cfg",
        bounds=(0.0, MAX_GUIDANCE), member_default=True))
    seed: int | None = field(default=None, metadata=param(  # None: chosen by prepare() and recorded
        "seed", "Seed", "Same seed + same settings = same image", "int", flag="--seed", bounds=(0, MAX_SEED)))
    sampler: str = field(default="DPM++ 2M", metadata=param(
        "sampler", "Sampler", "The sampler (scheduler) to denoise with", "choice", flag="--sampler",
        member_default=True))
    count: int = field(default=1, metadata=param(
        "count", "Images per prompt", "How many images (4 makes a 2×2 grid)", "int", flag="--count", bounds=(1, "max_count"),
        member_default=True))
    init_image: bytes | None = None  # img2img source as PNG/JPEG bytes (a PIL image is stored as PNG)
    strength: float = field(default=0.75, metadata=param(  # img2img only: 0 keeps the init image, 1 ignores it
        "strength", "Strength", "How far to move away from the init image (0 keeps it, 1 ignores it)", "float",
        bounds=(0.0, 1.0)))
    variation_seed: int | None = None
    variation_strength: float = 0.0  # 0 = the seed's image, 1 = the variation seed's image
    model: str = field(default="tinyshapes", metadata=param(
        "model", "Model", "Which model renders it", "choice", flag="--model"))
    tiling: bool = field(default=False, metadata=param(
        "tile", "Seamless tiling", "Make the image tile seamlessly, edge to edge (a pattern, a texture)", "bool",
        flag="--tile"))
    # References (generation.references): a picture whose style (--sref) or subject (--oref) to keep, each
    # with a weight, Midjourney's 0–1000 (None: 100). The URL is what the user gave (an inline flag; /imagine
    # offers an attachment option of the same name, whose URL it records); the job downloads it into *_image
    # after the row exists, and Reroll/Vary/re-render reuse the stored picture.
    sref_url: str | None = field(default=None, metadata=param(
        "sref", "Style reference", "A picture whose style to follow (URL)", "text", flag="--sref",
        command_option=False))
    sref_weight: int | None = field(default=None, metadata=param(
        "sw", "Style weight", "How strongly to follow the style reference, 0–1000 (default 100)", "int",
        flag="--sw", bounds=(0, 1000)))
    oref_url: str | None = field(default=None, metadata=param(
        "oref", "Object reference", "A picture of a subject or object to keep (URL)", "text", flag="--oref",
        command_option=False))
    oref_weight: int | None = field(default=None, metadata=param(
        "ow", "Object weight", "How strongly to keep the object reference, 0–1000 (default 100)", "int",
        flag="--ow", bounds=(0, 1000)))
    sref_image: bytes | None = None  # the style reference picture (PNG/JPEG bytes)
    oref_image: bytes | None = None  # the object reference picture
    # A masked edit of the init image (generation.editing): "zoom", "square", "pan", "region" or "blend".
    # Canvas and mask are derived from these and the init image, so an edit re-renders bit-exact.
    edit_mode: str | None = None
    edit_factor: float | None = None  # zoom: how much larger the canvas is (1.0–2.0)
    edit_direction: str | None = None  # pan: left, right, up or down
    edit_region: str | None = None  # region: cells of a 3×3 grid (0–8, row by row) joined with "+", e.g. "4"

    def __post_init__(self) -> None:
        for name in ("init_image", "sref_image", "oref_image"):  # a PIL image is stored as PNG bytes
            if isinstance(getattr(self, name), PIL.Image.Image):
                buffer = io.BytesIO()
                getattr(self, name).save(buffer, format="PNG")
                object.__setattr__(self, name, buffer.getvalue())

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    def image_seeds(self) -> list[int]:
        if self.seed is None:
            raise ValueError("seed is not chosen yet; pass the request through GenerationService.prepare()")
        if self.variation_seed is not None and self.variation_strength > 0:  # variations of ONE image
            return [self.seed] * self.count
        return [(self.seed + i) % SEED_RANGE for i in range(self.count)]

    def image_variation_seeds(self) -> list[int | None]:
        if self.variation_seed is None:
            return [None] * self.count
        return [(self.variation_seed + i) % SEED_RANGE for i in range(self.count)]


PARAMETERS = parameters_of(GenerationRequest)


@dataclass(frozen=True)
class BatchPlace:
    """Where an image sat in the pipeline call that rendered it: `size` images in the call, this one at
    `index`. Rendering it again bit-exact (same device type) needs the same place; see generation.batching."""

    size: int = 1
    index: int = 0


@dataclass(frozen=True)
class RenderedImage:
    image: PIL.Image.Image
    seed: int
    variation_seed: int | None = None
    variation_strength: float = 0.0
    nsfw: bool = False  # the model's own safety checker flagged it (such pipelines return it black)
    place: BatchPlace = BatchPlace()  # its pipeline call's batch size and its position in it


@dataclass(frozen=True)
class RenderResult:
    request: GenerationRequest
    images: list[RenderedImage]
    duration_s: float  # render time, excluding any model load
    model_load_s: float = 0.0  # time spent loading (switching to) the request's model, 0 if already loaded


@dataclass(frozen=True)
class Progress:
    step: int  # steps done so far over all images of the request
    total: int
    preview: PIL.Image.Image | None = field(default=None, compare=False)
