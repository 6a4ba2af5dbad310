"""Load a diffusers pipeline of any supported family and run one request: load -> call -> progress -> cancel.

Everything here runs on the service's single worker thread, except `tokenizer()`, `native_size()`,
`model_info()`, `defaults()` and `check_request()`, which read small files and never touch the loaded
pipeline. What differs between SD 1.x/2.x, SDXL, SD3 and Flux (samplers, guidance, negative prompts,
latent shape and packing, previews) lives in `generation.families`; this module has no family `if`s.

Reproducibility: image i of a request has its own fresh CPU `torch.Generator().manual_seed(seed_i)`,
and its starting latents are drawn from that generator on the CPU (through the family's own latent
preparation), so a seed gives the same picture on every device. Compatible requests share one pipeline
call (`render_batch`; see generation.batching); each image records its place in that call
(`RenderedImage.place`: batch size and position), and `render(request, place=...)` renders it again in
the same shape, bit-exact on the same device type. Alone vs in a batch differs by rounding only (README).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Callable

import PIL.Image
import torch

from .batching import PROBE_SIZES, ProbeTimer, batch_key, probe_rates, wall_clock
from .catalog import ModelCatalog
from .devices import (
    OFFLOAD_MODES,
    VAE_TILING_MODES,
    apply_cpu_threads,
    checked_placement,
    free_memory,
    pick_device,
    pick_dtype,
    place_pipeline,
    speed_up,
)
from .families import ModelInfo
from .loading import LoadedModel, img2img_pipeline, load_pipeline, loaded_model
from .models import ModelSource
from .pipeline_call import (
    BatchProgress,
    BatchProgressCallback,
    Slot,
    apply_loras,
    open_init_image,
    per_image_noise,
    render_call,
    set_seamless,
    set_vae_tiling,
    step_callback,
)
from .prompts import split_prompt
from .references import has_references
from .request import (
    BatchPlace,
    GenerationRequest,
    Progress,
    RenderCancelled,
    RenderedImage,
    RenderError,
    RenderResult,
    RequestError,
)

# Re-exported: the renderer's public neighbours (benchmarks and tests import them from here).
__all__ = [
    "OFFLOAD_MODES", "VAE_TILING_MODES", "BatchProgressCallback", "LoadedModel", "ProgressCallback", "Renderer",
    "free_memory", "pick_device", "pick_dtype",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


class Renderer:
    """Keeps one model loaded and renders requests with it, switching models on demand.

    `offload` (CUDA only): "none" keeps the whole pipeline on the GPU; "model" moves each component to
    the GPU while it runs (accelerate; SDXL fits in ~8 GB, Flux in ~16 GB); "sequential" streams the
    weights layer by layer (slowest, smallest). `vae_tiling`: "auto" decodes images larger than the
    native size in tiles on GPUs (less memory; on CPUs nothing changes), "on" always, "off" never.

    The cheap per-model facts come from its `catalog` (generation.catalog), placement from
    generation.devices, loading from generation.loading, the pipeline call from generation.pipeline_call.
    """

    def __init__(
        self,
        model: str | ModelSource = "tinyshapes",
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        extra_models: tuple[str | ModelSource, ...] = (),
        preview_every: int = 5,
        cpu_threads: int | None = None,
        offload: str = "none",
        vae_tiling: str = "auto",
        lora_dir: str | Path | None = None,
        compile_denoiser: bool = False,
        ip_adapter_dir: str | Path | None = None,
    ):
        self.catalog = ModelCatalog(model, extra_models, lora_dir, ip_adapter_dir)
        self.default_model = self.catalog.default_model
        self.loras = self.catalog.loras  # LORA_DIR: <lora:name:weight> in prompts
        self.device = pick_device(device)
        self._dtype_setting = dtype
        self.dtype = pick_dtype(dtype, self.device)  # SD 1.x's; each family may pick its own on load
        self.offload = checked_placement(offload, vae_tiling, self.device)
        self.vae_tiling = vae_tiling
        self.ip_adapters = self.catalog.ip_adapters  # IP_ADAPTER_DIR: --sref/--oref on SD 1.x and SDXL
        self.preview_every = preview_every
        # On a shared or small CPU, fewer torch threads can be much faster (less oversubscription).
        self.cpu_threads = cpu_threads
        # CUDA only: regional torch.compile of the UNet/transformer (TORCH_COMPILE), warmed at load; calls
        # are then padded to power-of-two batch sizes so the compiled graphs are reused.
        self.compile_denoiser = compile_denoiser and self.device.type == "cuda"
        self.bucket_batches = self.compile_denoiser
        self.loaded: LoadedModel | None = None

    # -- cheap lookups for validation (no pipeline needed): the catalog's --

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.catalog.model_names

    def source(self, name: str) -> ModelSource:
        return self.catalog.source(name)

    def model_info(self, model: str) -> ModelInfo:
        """Family and config facts of `model`, read once from its config files; RequestError if unusable."""
        return self.catalog.model_info(model)

    def tokenizer(self, model: str) -> Any:
        """The tokenizer whose window limits the prompt (None: an untested family, no length check)."""
        return self.catalog.tokenizer(model)

    def native_size(self, model: str) -> int:
        """Side of the square images the model was trained on (a ModelSpec's `size` wins)."""
        loaded = self.loaded
        if loaded is not None and loaded.source.name == model:
            return loaded.native_size
        return self.model_info(model).native_size

    def defaults(self, model: str) -> dict[str, Any]:
        """Request fields for `model` when the user sets none: the family's, overridden by its ModelSpec."""
        return self.catalog.defaults(model)

    def check_request(self, request: GenerationRequest) -> None:
        """RequestError if the request's model cannot render it (sampler, negative prompt, size, prompt
        weights, a LoRA that is missing or made for another family)."""
        self.catalog.check_request(request)

    def lora_names(self) -> list[str]:
        """The LoRAs in LORA_DIR (the choices for a lora option)."""
        return self.catalog.lora_names()

    def lora_hashes(self, prompt: str) -> dict[str, str]:
        """{name: A1111 short hash} of the LoRAs a prompt asks for, for the PNG's `Lora hashes`."""
        return self.catalog.lora_hashes(prompt)

    # -- loading --

    def load(self, model: str) -> float:
        """Make `model` the loaded one; returns the seconds spent loading (0 if it already was)."""
        if self.loaded is not None and self.loaded.source.name == model:
            return 0.0
        apply_cpu_threads(self.cpu_threads, self.device)
        source = self.source(model)
        try:
            info = self.model_info(model)
        except RequestError as error:
            raise RenderError(str(error)) from None
        self.unload()  # one model at a time: free the old weights before reading the new ones
        started = time.perf_counter()
        family = info.family
        dtype = pick_dtype(source.dtype_setting() or self._dtype_setting, self.device, family)
        if not family.tested:
            log.info("model %s is a %s: untested in imagine-bot, rendering with diffusers' defaults",
                     source.name, info.pipeline_class)
        try:
            txt2img = load_pipeline(source, info, dtype)
        except (OSError, ValueError) as error:  # missing files, not in the offline cache, wrong layout
            log.exception("loading model %s from %s failed", source.name, source.path)
            raise RenderError(f"Model {source.label!r} could not be loaded from {source.path}: {error}") from None
        return self._use(source, info, txt2img, dtype, started)

    def adopt(self, model: str, txt2img: Any) -> float:
        """Make an already built text-to-image pipeline the loaded `model` (its config folder must be
        readable, for the family). For random-weight checks (gpu_check) that build weights in place."""
        apply_cpu_threads(self.cpu_threads, self.device)
        source, info = self.source(model), self.model_info(model)
        self.catalog.add(source)
        self.unload()
        parameter = next(iter(txt2img.components[info.family.denoiser].parameters()))
        return self._use(source, info, txt2img, parameter.dtype, time.perf_counter())

    def _use(self, source: ModelSource, info: ModelInfo, txt2img: Any, dtype: torch.dtype, started: float) -> float:
        family = info.family
        img2img = img2img_pipeline(txt2img)
        place_pipeline(txt2img, self.device, self.offload)
        speed_up(txt2img, family, self.device, self.offload, self.compile_denoiser)
        load_s = time.perf_counter() - started
        self.loaded = loaded_model(source, info, txt2img, img2img, dtype, load_s)
        log.info("loaded model %s (%s) from %s on %s/%s%s in %.2fs", source.name, family.title, source.path,
                 self.device, str(dtype).removeprefix("torch."),
                 f", offload={self.offload}" if self.offload != "none" else "", load_s)
        if self.compile_denoiser:  # compile now, not in the first user's render; larger buckets on first use
            self.warm_up(source.name, batch_sizes=(1, 2, 4))
        return load_s

    def unload(self) -> None:
        if self.loaded is None:
            return
        log.info("unloading model %s", self.loaded.source.name)
        self.loaded = None
        free_memory()

    # -- rendering --

    def batch_key(self, request: GenerationRequest) -> Hashable | None:
        """The request's `generation.batching.batch_key`, or None when each of its images is rendered in a
        call of its own: untested families (the pipeline draws its own noise) and DPM++ SDE Karras (one
        Brownian tree per call, seeded with the image's seed)."""
        try:
            info = self.model_info(request.model)
        except RequestError:
            return None
        if not info.family.tested or not per_image_noise(request.sampler, info.family):
            return None
        if request.edit_mode is not None:  # generation.editing: each image in a call of its own
            return None
        if info.family.edits_by_instruction or has_references(request):  # generation.edit_families, references
            return None
        return batch_key(request)

    def render(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        place: BatchPlace | None = None,
    ) -> RenderResult:
        """Render a prepared request (seed and size chosen), all its images in one pipeline call where the
        family allows. `place` re-renders a count=1 request as a recorded image was rendered: at that
        position of a call of that size (padded with copies of itself). Raises RenderCancelled or RenderError."""
        relay: BatchProgressCallback | None = None
        if on_progress is not None:
            callback = on_progress

            def relay(index: int, progress: Progress) -> None:
                callback(progress)

        return self.render_batch([request], on_progress=relay, is_cancelled=is_cancelled, place=place)[0]

    def render_batch(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_progress: BatchProgressCallback | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        images_per_call: int | None = None,
        place: BatchPlace | None = None,
    ) -> list[RenderResult]:
        """Render prepared requests with equal `batch_key`s together: every image of them in one pipeline
        call (or calls of at most `images_per_call` images), each with its own prompt, negative prompt,
        CPU generator and starting noise. `on_progress(i, Progress)` reports request i's own steps and
        previews; `is_cancelled()` stops the whole call. One RenderResult per request, in order."""
        if not requests:
            return []
        for request in requests:
            if request.seed is None or request.width is None or request.height is None:
                raise ValueError("render() needs a prepared request (seed and size set); use GenerationService.prepare")
        try:
            return self._render_requests(list(requests), on_progress, is_cancelled, images_per_call, place)
        except torch.OutOfMemoryError:
            pass  # free memory after the handler: until then its traceback keeps the tensors alive
        free_memory()
        lead = requests[0]
        images = sum(request.count for request in requests)
        raise RenderError(
            f"Ran out of GPU memory rendering {images} image(s) at {lead.width}x{lead.height}; "
            "try a smaller size or fewer images.",
            retryable=True,
        )

    def probe_batch_images(self, model: str, sizes: Sequence[int] = PROBE_SIZES, steps: int = 2,
                           timer: ProbeTimer = wall_clock) -> dict[int, float]:
        """Images/s at 1, 2, 4, … images per call (native size, `steps` steps; `probe_rates` says when to
        stop): what BATCH_IMAGES=auto picks from on a CPU (a few seconds). `timer` runs and times each call."""
        self.load(model)
        native = self.native_size(model)
        defaults = self.defaults(model)
        request = GenerationRequest(
            "a red circle on a blue background", width=native, height=native, num_inference_steps=steps,
            guidance_scale=defaults["guidance_scale"], sampler=defaults["sampler"], seed=0, model=model,
        )
        self.render_batch([request])  # warm-up: first-call allocations
        return probe_rates(lambda size: timer(size, lambda: self.render_batch([request.replace(count=size)])), sizes)

    def warm_up(self, model: str, batch_sizes: Sequence[int] = (1,), steps: int = 2) -> None:
        """Render throwaway batches of these sizes at the native size (compiled graphs, kernel choice)."""
        native = self.native_size(model)
        defaults = self.defaults(model)
        request = GenerationRequest("warm up", width=native, height=native, num_inference_steps=steps,
                                    guidance_scale=defaults["guidance_scale"], sampler=defaults["sampler"],
                                    seed=0, model=model)
        for size in batch_sizes:
            self.render_batch([request.replace(count=size)])

    def _render_requests(
        self,
        requests: list[GenerationRequest],
        on_progress: BatchProgressCallback | None,
        is_cancelled: Callable[[], bool] | None,
        images_per_call: int | None,
        place: BatchPlace | None,
    ) -> list[RenderResult]:
        apply_cpu_threads(self.cpu_threads, self.device)
        lead = requests[0]
        load_s = self.load(lead.model)
        for request in requests:
            try:
                self.check_request(request)  # a family's rules hold for direct renderer calls too
            except RequestError as error:
                raise RenderError(str(error)) from None
        key = self.batch_key(lead)
        if len(requests) > 1 and (key is None or any(self.batch_key(request) != key for request in requests[1:])):
            raise ValueError("render_batch() takes requests with equal batch keys (generation.batching.batch_key)")
        if place is not None and (len(requests) > 1 or lead.count != 1 or not 0 <= place.index < place.size):
            raise ValueError("a batch place re-renders one image (count=1) at a position inside its batch")
        started = time.perf_counter()
        model = self.loaded
        assert model is not None  # loaded above
        apply_loras(model, split_prompt(lead.prompt).loras, self.loras)
        set_vae_tiling(model, lead, self.vae_tiling, self.device)
        set_seamless(model, lead.tiling)
        slots: list[Slot] = []
        for number, request in enumerate(requests):
            init_image = open_init_image(request) if request.init_image is not None else None
            for seed, variation_seed in zip(request.image_seeds(), request.image_variation_seeds()):
                slots.append(Slot(number, request, seed, variation_seed, init_image))
        per_call = len(slots) if key is not None else 1
        if images_per_call is not None:
            per_call = max(1, min(per_call, images_per_call))
        calls = [slots[start:start + per_call] for start in range(0, len(slots), per_call)]
        progress = BatchProgress(calls, on_progress)
        outputs: list[tuple[PIL.Image.Image, bool, BatchPlace]] = []
        for number, call in enumerate(calls):
            if is_cancelled is not None and is_cancelled():
                raise RenderCancelled()
            callback = step_callback(model, progress, number, call, is_cancelled, self.preview_every)
            outputs.extend(render_call(model, call, callback, place, self.bucket_batches, self.ip_adapters))
            if is_cancelled is not None and is_cancelled():
                raise RenderCancelled()
        duration = time.perf_counter() - started
        results = []
        for number, request in enumerate(requests):
            images = [
                RenderedImage(image, slot.seed, slot.variation_seed,
                              request.variation_strength if slot.variation_seed is not None else 0.0,
                              nsfw=nsfw, place=where)
                for slot, (image, nsfw, where) in zip(slots, outputs) if slot.request_number == number
            ]
            results.append(RenderResult(request, images, duration, load_s))
        return results
