"""The render side built from RenderSettings, one recipe for both composition roots: the bot (bot.app,
which renders in its own process or as one worker) and a render worker (generation.worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import ModelSource
from ..models_file import load_model_specs
from ..request import Limits
from .classifier import build_classifier
from .finish import Finisher
from .inprocess import GenerationService
from .waiter import PLAIN, Waiter
from .worker import WorkerConfig

if TYPE_CHECKING:
    from ..settings import RenderSettings


def build_service(settings: RenderSettings, waiter: Waiter = PLAIN) -> GenerationService:
    """The in-process scheduler that the settings describe (not started)."""
    from ..renderer import Renderer  # imports torch and diffusers: only when a real renderer is built

    models: list[str | ModelSource]
    if settings.models_file is not None:
        models = list(load_model_specs(settings.models_file).values())  # ModelConfigError names the problem
    else:
        models = list(settings.model_names)
    renderer = Renderer(models[0], device=settings.device, dtype=settings.dtype, extra_models=tuple(models[1:]),
                        cpu_threads=settings.cpu_threads, compile_denoiser=settings.torch_compile,
                        offload=settings.offload, lora_dir=settings.lora_dir,
                        ip_adapter_dir=settings.ip_adapter_dir)
    limits = Limits(min_size=settings.min_size, max_size=settings.max_size, max_pixels=settings.max_pixels,
                    max_steps=settings.max_steps, max_count=settings.max_count, models=tuple(settings.model_names))
    return GenerationService(renderer, limits, per_owner_cap=settings.queue_per_user, total_cap=settings.queue_total,
                             waiter=waiter, batch_images=settings.batch_images)


def worker_config(settings: RenderSettings) -> WorkerConfig:
    """What a render worker of the shared queue claims, and how it holds it."""
    return WorkerConfig(models=tuple(settings.model_names), max_size=settings.max_size, lease_s=settings.lease_s,
                        poll_s=settings.queue_poll_s, jobs=settings.worker_jobs,
                        max_attempts=settings.max_render_attempts, worker_id=settings.worker_id)


def build_finisher(settings: RenderSettings, scheduler: GenerationService) -> Finisher:
    """The finish step (NSFW check, files, the record) for images `scheduler` renders."""
    classifier = build_classifier(settings.nsfw_classifier, settings.nsfw_classifier_labels,
                                  settings.nsfw_classifier_threshold)
    return Finisher(scheduler.renderer, classifier)
