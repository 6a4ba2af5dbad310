"""One pipeline call: the rows of a batch (seeds, starting noise, prompts, init images), the family's
arguments, LoRAs, tiling and VAE tiling, the step callback (progress, previews, cancel) and the images
with their safety-checker verdicts.

Runs on the render thread with a loaded model (generation.loading.LoadedModel). What differs between
families comes from the family object; nothing here branches on a family's name.
"""

from __future__ import annotations

import inspect
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import PIL.Image
import torch

from .batching import bucket
from .edit_families import render_instruction_edit
from .editing import render_edit
from .families import Family
from .loading import LoadedModel
from .loras import LoraLibrary, adapter_name
from .prompts import LoraTag, has_weights, plain_text, split_prompt
from .references import IpAdapters, references_of
from .request import BatchPlace, GenerationRequest, Progress, RenderError
from .samplers import make_scheduler

log = logging.getLogger(__name__)

BatchProgressCallback = Callable[[int, Progress], None]  # (request number in the batch, its progress)


@dataclass(frozen=True)
class Slot:
    """One image of a batch: which request it belongs to, its seeds and its (opened) init image."""

    request_number: int
    request: GenerationRequest
    seed: int
    variation_seed: int | None
    init_image: PIL.Image.Image | None


class BatchProgress:
    """Each request's own progress over the calls its images are in: step k of N per call."""

    def __init__(self, calls: list[list[Slot]], on_progress: BatchProgressCallback | None):
        self.on_progress = on_progress
        self.calls_of: dict[int, list[int]] = {}
        for number, call in enumerate(calls):
            for request_number in dict.fromkeys(slot.request_number for slot in call):
                self.calls_of.setdefault(request_number, []).append(number)

    def report(self, request_number: int, call_number: int, done: int, per_call: int,
               preview: PIL.Image.Image | None) -> None:
        if self.on_progress is None:
            return
        calls = self.calls_of[request_number]
        step = calls.index(call_number) * per_call + done
        self.on_progress(request_number, Progress(step, len(calls) * per_call, preview))


def per_image_noise(sampler: str, family: Family) -> bool:
    """Whether the sampler draws its noise from the per-image generators (all but DPM++ SDE's Brownian tree)."""
    return family.samplers.get(sampler, ("", {}))[0] != "DPMSolverSDEScheduler"


def first_image(output: Any) -> tuple[PIL.Image.Image, bool]:
    """A pipeline output's image and its safety checker's verdict (`nsfw_content_detected`, where it has one)."""
    flags = getattr(output, "nsfw_content_detected", None)
    return output.images[0], bool(flags[0]) if flags else False


def all_images(output: Any) -> tuple[list[PIL.Image.Image], list[bool]]:
    """A pipeline output's images and its safety checker's verdict on each (False where it has none)."""
    flags = getattr(output, "nsfw_content_detected", None)
    images = list(output.images)
    return images, [bool(flags[row]) if flags else False for row in range(len(images))]


def prepared_size(request: GenerationRequest) -> tuple[int, int]:
    assert request.width is not None and request.height is not None, "prepare() chooses the size"
    return request.width, request.height


def open_init_image(request: GenerationRequest) -> PIL.Image.Image:
    assert request.init_image is not None
    try:
        image: PIL.Image.Image = PIL.Image.open(io.BytesIO(request.init_image)).convert("RGB")
    except Exception:
        raise RenderError("The init image could not be read; use a PNG or JPEG image.") from None
    size = prepared_size(request)
    if request.edit_mode is not None:  # an edit's source keeps its size: generation.editing places it
        return image
    return image if image.size == size else image.resize(size, PIL.Image.Resampling.LANCZOS)


def _takes_size(pipe: Any) -> bool:
    """An untested family's img2img pipeline: whether its call takes width and height (no family says)."""
    return {"width", "height"} <= set(inspect.signature(pipe.__call__).parameters)


def set_seamless(model: LoadedModel, tiling: bool) -> None:
    """--tile: every convolution pads circularly, so the image wraps around at its edges.

    Set on each call (not left over from the last request). Transformer families (SD3, Flux) have
    few convolutions outside the VAE, so there it makes the decoded edges match but not the layout.
    """
    mode: Literal["circular", "zeros"] = "circular" if tiling else "zeros"
    for component in (getattr(model.txt2img, name, None) for name in (model.family.denoiser, "vae")):
        if isinstance(component, torch.nn.Module):
            for module in component.modules():
                if isinstance(module, torch.nn.Conv2d) and module.padding != (0, 0):
                    module.padding_mode = mode


def set_vae_tiling(model: LoadedModel, request: GenerationRequest, mode: str, device: torch.device) -> None:
    """VAE_TILING: "on" always, "auto" above the native size on GPUs (on CPUs nothing changes), "off" never."""
    vae = getattr(model.txt2img, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return
    larger = max(prepared_size(request)) > model.native_size
    if mode == "on" or (mode == "auto" and larger and device.type != "cpu"):
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def render_call(
    model: LoadedModel, call: list[Slot], callback: Callable[..., dict], place: BatchPlace | None = None,
    bucket_batches: bool = False, ip_adapters: IpAdapters | None = None,
) -> list[tuple[PIL.Image.Image, bool, BatchPlace]]:
    """One pipeline call for `call`'s images: (image, flagged by the pipeline's safety checker, its place).

    Row i of the batch is image i: its own CPU generator (seeded with its seed), starting noise drawn
    from it on the CPU, prompt, negative prompt and init image. `place` pads the call to `place.size`
    rows (copies of the one image) and keeps row `place.index`; with `bucket_batches` a call is padded
    to the next power of two so compiled graphs are reused (the padding rows are thrown away).
    `ip_adapters` takes a request's --sref/--oref on SD 1.x and SDXL (generation.references).
    """
    family = model.family
    lead = call[0].request
    width, height = prepared_size(lead)
    rows, positions = list(call), list(range(len(call)))
    if place is not None:
        rows, positions = [call[0]] * place.size, [place.index]
    elif bucket_batches and len(call) > 1:
        rows += [call[-1]] * (bucket(len(call)) - len(call))
    size = len(rows)
    generators = [torch.Generator("cpu").manual_seed(slot.seed) for slot in rows]
    common: dict[str, Any] = dict(
        num_inference_steps=lead.num_inference_steps,
        generator=generators[0] if size == 1 else generators,
        callback_on_step_end=callback,
        **text_arguments(model, lead, rows),
    )
    scheduler = make_scheduler(lead.sampler, model.scheduler_config, seed=rows[0].seed, table=family.samplers)
    if family.edits_by_instruction:  # one image per call: see generation.edit_families
        pictures = [reference.picture() for reference in references_of(lead)]
        output = render_instruction_edit(model.txt2img, family, call[0].init_image, pictures, common, scheduler,
                                         width, height)
        return [(all_images(output)[0][0], False, BatchPlace())]
    if ip_adapters is not None:
        pipes = [pipe for pipe in (model.txt2img, model.img2img) if pipe is not None]
        common.update(ip_adapters.call_arguments(pipes, model.source, lead))
    if lead.edit_mode is not None and call[0].init_image is not None:  # zoom, pan, region, blend: one image
        image, output = render_edit(model, lead, call[0].init_image, common, scheduler)
        return [(image, all_images(output)[1][0], BatchPlace())]
    if lead.init_image is None:
        pipe = model.txt2img
        if family.tested:  # our own seeded noise, so variations and devices agree
            latents = torch.cat([
                family.initial_noise(pipe, width, height, generator, slot.variation_seed,
                                     slot.request.variation_strength)
                for generator, slot in zip(generators, rows)
            ])
            common["latents"] = latents.to(pipe._execution_device, model.dtype)
        pipe.scheduler = scheduler
        images, flags = all_images(pipe(**common, width=width, height=height))
    elif family.denoising_steps(lead.num_inference_steps, lead.strength) == 0:
        # No denoising step runs at this strength (diffusers would reject it): the image is unchanged.
        images = [slot.init_image.copy() for slot in rows if slot.init_image is not None]
        flags = [False] * size
    else:
        pipe = model.img2img
        assert pipe is not None  # check_request refused image-to-image for a family without it
        pipe.scheduler = scheduler
        if {"width", "height"} <= set(inspect.signature(pipe.__call__).parameters):  # Flux img2img
            common.update(width=width, height=height)
        init_images = [slot.init_image for slot in rows]
        images, flags = all_images(pipe(**common, image=init_images[0] if size == 1 else init_images,
                                         strength=lead.strength))
    return [(images[row], flags[row], BatchPlace(size, row)) for row in positions]


def text_arguments(model: LoadedModel, lead: GenerationRequest, rows: list[Slot]) -> dict[str, Any]:
    """prompt/negative_prompt per row (or the shared embeddings of a weighted prompt) plus the family's guidance."""
    family, info = model.family, model.info
    arguments = family.call_arguments(lead, info)
    parts = split_prompt(lead.prompt)
    size = len(rows)
    if parts.weighted or has_weights(lead.negative_prompt):  # batch_key: every row has this prompt
        arguments.pop("negative_prompt", None)
        with torch.no_grad():
            embeds = family.weighted_arguments(model.txt2img, parts.text, lead.negative_prompt, info)
        if size > 1:
            embeds = {name: tensor.repeat(size, *[1] * (tensor.dim() - 1)) for name, tensor in embeds.items()}
        return {**arguments, **embeds}
    # A prompt without syntax reaches the pipeline exactly as typed.
    prompts = [plain_text(split_prompt(slot.request.prompt).text) for slot in rows]
    arguments["prompt"] = prompts[0] if size == 1 else prompts
    if arguments.get("negative_prompt"):  # batch_key: every row has one
        negatives = [plain_text(slot.request.negative_prompt) for slot in rows]
        arguments["negative_prompt"] = negatives[0] if size == 1 else negatives
    return arguments


def apply_loras(model: LoadedModel, tags: tuple[LoraTag, ...], library: LoraLibrary) -> None:
    """Load the prompt's LoRAs (peft adapters, kept between requests that ask for them), drop the rest."""
    pipe, wanted = model.txt2img, {tag.name: tag.weight for tag in tags}
    if not wanted:
        if model.adapters:
            pipe.unload_lora_weights()  # the exact base weights again
            model.adapters.clear()
        return
    unwanted = [model.adapters.pop(name) for name in list(model.adapters) if name not in wanted]
    if unwanted:
        pipe.delete_adapters(unwanted)
    for name in wanted:
        if name not in model.adapters:
            path = library.path(name)
            try:
                pipe.load_lora_weights(str(path), adapter_name=adapter_name(name))
            except (ValueError, KeyError, RuntimeError) as error:
                log.warning("LoRA %s does not load into %s: %s", name, model.source.name, error)
                raise RenderError(f"The LoRA {name!r} does not fit {model.source.label}: {error}") from None
            model.adapters[name] = adapter_name(name)
    pipe.set_adapters([model.adapters[name] for name in wanted], adapter_weights=list(wanted.values()))


def step_callback(
    model: LoadedModel,
    progress: BatchProgress,
    call_number: int,
    call: list[Slot],
    is_cancelled: Callable[[], bool] | None,
    preview_every: int,
) -> Callable[..., dict]:
    """diffusers' callback_on_step_end for one call: cancellation, and each request's steps and previews."""
    preview, family = model.preview, model.family
    width, height = prepared_size(call[0].request)
    first_rows: dict[int, int] = {}  # request number -> the row of its first image in this call
    for row, slot in enumerate(call):
        first_rows.setdefault(slot.request_number, row)

    def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        if is_cancelled is not None and is_cancelled():
            pipe._interrupt = True  # diffusers skips the remaining steps
            return {}
        if progress.on_progress is not None:
            per_call = pipe.num_timesteps
            done = step + 1
            latents = None
            if preview is not None and done % preview_every == 0 and done < per_call:
                latents = family.preview_latents(pipe, tensors["latents"], width, height)
            for request_number, row in first_rows.items():
                image = preview.image(latents[row:row + 1]) if preview is not None and latents is not None else None
                progress.report(request_number, call_number, done, per_call, image)
        return {}

    return on_step_end
