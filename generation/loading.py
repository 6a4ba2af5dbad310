"""Loading a model: the family's diffusers pipelines (text-to-image and its image-to-image twin) and
what a render needs beside them (scheduler config, latent previews, loaded LoRAs).

Runs on the render thread. The family decides the pipeline class; nothing here branches on a family.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from .edit_families import load_edit_pipeline
from .families import Family, ModelInfo
from .latents import LatentPreview
from .models import ModelSource

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    source: ModelSource
    txt2img: Any  # the family's text-to-image pipeline
    img2img: Any | None  # the same components, no second copy of the weights (None: the family has none)
    native_size: int
    preview: LatentPreview | None
    load_s: float
    info: ModelInfo
    dtype: torch.dtype = torch.float32
    scheduler_config: Any = None  # the model's own scheduler config: every sampler is built from it
    adapters: dict[str, str] = field(default_factory=dict)  # LoRA name -> peft adapter name, loaded now

    @property
    def family(self) -> Family:
        assert self.info is not None  # Renderer.load always passes the model's info
        return self.info.family


def load_pipeline(source: ModelSource, info: ModelInfo, dtype: torch.dtype) -> Any:
    """The family's text-to-image pipeline: AutoPipeline for folders and hub ids, from_single_file for a
    checkpoint (with its config folder), or the forced family's class; an instruction-edit family's own
    pipeline (generation.edit_families)."""
    import diffusers
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING, _get_task_class

    if info.family.edits_by_instruction:
        return load_edit_pipeline(source, info, dtype)
    forced = source.forced_family()
    class_name = info.family.pipelines[0] if forced else (info.pipeline_class or "StableDiffusionPipeline")
    if source.is_single_file:
        pipeline_class = _get_task_class(AUTO_TEXT2IMAGE_PIPELINES_MAPPING, class_name, False) or getattr(
            diffusers, class_name
        )
        return pipeline_class.from_single_file(source.path, config=source.config, dtype=dtype)
    if forced:
        return getattr(diffusers, class_name).from_pretrained(source.path, dtype=dtype)
    return diffusers.AutoPipelineForText2Image.from_pretrained(source.path, dtype=dtype)


def img2img_pipeline(txt2img: Any) -> Any | None:
    """The family's image-to-image pipeline over the same modules: no second copy of the weights and no
    cast (AutoPipelineForImage2Image.from_pipe would cast them again, warning on every load). Turns both
    pipelines' progress bars off (the status line counts steps)."""
    txt2img.set_progress_bar_config(disable=True)
    from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, _get_task_class

    try:
        pipeline_class = _get_task_class(AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, type(txt2img).__name__, False)
    except Exception:
        pipeline_class = None
    if pipeline_class is None:
        return None
    parameters = inspect.signature(pipeline_class.__init__).parameters
    components = {name: module for name, module in txt2img.components.items() if name in parameters}
    for name in parameters:  # plain config flags such as requires_safety_checker, force_zeros_for_empty_prompt
        if name not in components and name in txt2img.config and not isinstance(txt2img.config[name], (list, tuple)):
            components[name] = txt2img.config[name]
    img2img = pipeline_class(**components)
    img2img.set_progress_bar_config(disable=True)
    return img2img


def loaded_model(source: ModelSource, info: ModelInfo, txt2img: Any, img2img: Any | None, dtype: torch.dtype,
                 load_s: float) -> LoadedModel:
    """The loaded model around its placed pipelines (previews decode on the pipeline's execution device)."""
    preview = None
    if info.family.tested and not info.family.edits_by_instruction:  # a tested family's pipelines all have a VAE
        preview = LatentPreview(txt2img.vae, txt2img.vae_scale_factor, device=txt2img._execution_device)
    return LoadedModel(source, txt2img, img2img, info.native_size, preview, load_s, info, dtype,
                       txt2img.scheduler.config)
