"""Image generation: requests and their validation, inline prompt flags, samplers, the diffusers
renderer, and the fair render queue (GenerationService) that the bot uses.

Importing this package does not import torch; `Renderer` loads it on first use.
"""

from .flags import apply_prompt_flags, expand_prompt, parse_prompt_flags
from .jobs import Job, JobCancelled, JobFailed, QueueEntry, QueueSnapshot
from .families import FAMILIES, Family, ModelInfo, read_model_info
from .edit_families import register as _register_edit_families
from .metadata import a1111_parameters, encode_png
from .models import ModelSource, ModelSpec, model_source, resolve_model
from .models_file import ModelConfigError, load_model_specs
from .parameters import Parameter
from .request import (
    MAX_SEED,
    PARAMETERS,
    GenerationRequest,
    Limits,
    Progress,
    QueueFull,
    RenderCancelled,
    RenderedImage,
    RenderError,
    RenderResult,
    RequestError,
)
from .samplers import SAMPLERS
from .queue.admission import Reservation
from .queue.inprocess import GenerationService
from .sizes import ASPECT_RATIOS, size_for_aspect_ratio
from .variants import reroll_request, upscale_request, variation_request

_register_edit_families()  # Kontext, Qwen-Image-Edit and klein join FAMILIES

__all__ = [
    "ASPECT_RATIOS",
    "FAMILIES",
    "MAX_SEED",
    "PARAMETERS",
    "Parameter",
    "Reservation",
    "SAMPLERS",
    "GenerationRequest",
    "GenerationService",
    "Job",
    "JobCancelled",
    "JobFailed",
    "Limits",
    "Family",
    "ModelConfigError",
    "ModelInfo",
    "ModelSource",
    "ModelSpec",
    "Progress",
    "QueueEntry",
    "QueueFull",
    "QueueSnapshot",
    "RenderCancelled",
    "RenderError",
    "RenderResult",
    "RenderedImage",
    "Renderer",
    "RequestError",
    "a1111_parameters",
    "apply_prompt_flags",
    "expand_prompt",
    "encode_png",
    "load_model_specs",
    "model_source",
    "parse_prompt_flags",
    "read_model_info",
    "reroll_request",
    "resolve_model",
    "size_for_aspect_ratio",
    "upscale_request",
    "variation_request",
]


def __getattr__(name: str):
    if name == "Renderer":  # imports torch and diffusers: only when a real renderer is wanted
        from .renderer import Renderer

        return Renderer
    raise AttributeError(f"module 'generation' has no attribute {name!r}")
