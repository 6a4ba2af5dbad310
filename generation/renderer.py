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

import gc
import inspect
import io
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import PIL.Image
import torch

from .batching import IMPROVEMENT, PROBE_SIZES, batch_key, bucket
from .edit_families import load_edit_pipeline, render_instruction_edit
from .editing import render_edit
from .families import Family, ModelInfo, read_model_info
from .latents import LatentPreview
from .loras import LoraLibrary, adapter_name
from .models import ModelSource, model_source
from .prompts import LoraTag, has_weights, plain_text, split_prompt
from .references import IpAdapters, check_references, has_references, references_of
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
from .samplers import make_scheduler

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]
BatchProgressCallback = Callable[[int, Progress], None]  # (request number in the batch, its progress)
OFFLOAD_MODES = ("none", "model", "sequential")
VAE_TILING_MODES = ("auto", "on", "off")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype, device: torch.device, family: Family | None = None) -> torch.dtype:
    """The dtype to load in. "auto": on CUDA the family's (fp16; bf16 for SD3 and Flux where the GPU has
    bf16, else fp16); CPUs and MPS are safest in fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        if family is not None and family.cuda_dtype == "bfloat16" and _cuda_has_bf16():
            return torch.bfloat16
        return torch.float16
    names = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in names:
        raise ValueError(f"Unknown dtype {dtype!r}. Use one of: auto, {', '.join(names)}.")
    return names[dtype]


def _cuda_has_bf16() -> bool:
    try:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    except Exception:  # pragma: no cover - no usable CUDA
        return False


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


class Renderer:
    """Keeps one model loaded and renders requests with it, switching models on demand.

    `offload` (CUDA only): "none" keeps the whole pipeline on the GPU; "model" moves each component to
    the GPU while it runs (accelerate; SDXL fits in ~8 GB, Flux in ~16 GB); "sequential" streams the
    weights layer by layer (slowest, smallest). `vae_tiling`: "auto" decodes images larger than the
    native size in tiles on GPUs (less memory; on CPUs nothing changes), "on" always, "off" never.
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
        default = model_source(model)
        self.default_model = default.name
        self._sources = {source.name: source for source in map(model_source, (default, *extra_models))}
        self.device = pick_device(device)
        self._dtype_setting = dtype
        self.dtype = pick_dtype(dtype, self.device)  # SD 1.x's; each family may pick its own on load
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"Unknown offload {offload!r}. Use one of: {', '.join(OFFLOAD_MODES)}.")
        if vae_tiling not in VAE_TILING_MODES:
            raise ValueError(f"Unknown vae_tiling {vae_tiling!r}. Use one of: {', '.join(VAE_TILING_MODES)}.")
        if offload != "none" and self.device.type != "cuda":
            log.warning("offload=%s needs a CUDA device; rendering on %s without offload", offload, self.device)
            offload = "none"
        self.offload = offload
        self.vae_tiling = vae_tiling
        self.loras = LoraLibrary(lora_dir)  # LORA_DIR: <lora:name:weight> in prompts
        self.ip_adapters = IpAdapters(ip_adapter_dir)  # IP_ADAPTER_DIR: --sref/--oref on SD 1.x and SDXL
        self.preview_every = preview_every
        # On a shared or small CPU, fewer torch threads can be much faster (less oversubscription).
        self.cpu_threads = cpu_threads
        # CUDA only: regional torch.compile of the UNet/transformer (TORCH_COMPILE), warmed at load; calls
        # are then padded to power-of-two batch sizes so the compiled graphs are reused.
        self.compile_denoiser = compile_denoiser and self.device.type == "cuda"
        self.bucket_batches = self.compile_denoiser
        self.loaded: LoadedModel | None = None
        self._tokenizers: dict[str, Any] = {}
        self._infos: dict[str, ModelInfo] = {}
        self._tokenizer_lock = threading.Lock()

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def source(self, name: str) -> ModelSource:
        return self._sources.get(name) or model_source(name)

    # -- cheap lookups for validation (no pipeline needed) --

    def model_info(self, model: str) -> ModelInfo:
        """Family and config facts of `model`, read once from its config files; RequestError if unusable."""
        with self._tokenizer_lock:
            if model not in self._infos:
                self._infos[model] = read_model_info(self.source(model))
            return self._infos[model]

    def tokenizer(self, model: str) -> Any:
        """The tokenizer whose window limits the prompt, loaded on its own (no pipeline needed).

        SD 1.x/2.x and SDXL: CLIP (77 tokens). SD3 and Flux: T5 (256 or 512 tokens; their CLIP encoders
        read only the start of a long prompt by design). None: an untested family (no length check).
        """
        info = self.model_info(model)
        with self._tokenizer_lock:
            if model not in self._tokenizers:
                self._tokenizers[model] = self._read_tokenizer(model, info)
            return self._tokenizers[model]

    def _read_tokenizer(self, model: str, info: ModelInfo) -> Any:
        config = self.source(model).config_source
        if info.family.key in ("sd", "sdxl"):
            from transformers import CLIPTokenizer

            return CLIPTokenizer.from_pretrained(config, subfolder="tokenizer")
        if info.family.key in ("sd3", "flux"):
            from transformers import AutoTokenizer

            subfolder = "tokenizer_3" if info.family.key == "sd3" else "tokenizer_2"
            tokenizer = AutoTokenizer.from_pretrained(config, subfolder=subfolder)
            tokenizer.model_max_length = min(tokenizer.model_max_length, info.text_window or 10**6)
            return tokenizer
        return None  # untested family: the pipeline truncates as it does

    def native_size(self, model: str) -> int:
        """Side of the square images the model was trained on (a ModelSpec's `size` wins)."""
        loaded = self.loaded
        if loaded is not None and loaded.source.name == model:
            return loaded.native_size
        return self.model_info(model).native_size

    def defaults(self, model: str) -> dict[str, Any]:
        """Request fields for `model` when the user sets none: the family's, overridden by its ModelSpec.

        Keys: num_inference_steps, guidance_scale, sampler, and negative_prompt when configured.
        """
        values = self.model_info(model).defaults()
        spec_defaults = getattr(self.source(model), "request_defaults", None)
        if spec_defaults is not None:
            values.update(spec_defaults())
        return values

    def check_request(self, request: GenerationRequest) -> None:
        """RequestError if the request's model cannot render it (sampler, negative prompt, size, prompt
        weights, a LoRA that is missing or made for another family)."""
        info = self.model_info(request.model)
        info.family.check_request(request, info)
        for tag in split_prompt(request.prompt).loras:
            self.loras.check_fits(tag.name, info)
        check_references(request, info, self.ip_adapters, self.source(request.model))

    def lora_names(self) -> list[str]:
        """The LoRAs in LORA_DIR (the choices for a lora option)."""
        return self.loras.names()

    def lora_hashes(self, prompt: str) -> dict[str, str]:
        """{name: A1111 short hash} of the LoRAs a prompt asks for, for the PNG's `Lora hashes`."""
        return {tag.name: self.loras.short_hash(tag.name) for tag in split_prompt(prompt).loras}

    # -- loading --

    def load(self, model: str) -> float:
        """Make `model` the loaded one; returns the seconds spent loading (0 if it already was)."""
        if self.loaded is not None and self.loaded.source.name == model:
            return 0.0
        self._apply_cpu_threads()
        source = self.source(model)
        try:
            info = self.model_info(model)
        except RequestError as error:
            raise RenderError(str(error)) from None
        self.unload()  # one model at a time: free the old weights before reading the new ones
        started = time.perf_counter()
        family = info.family
        dtype = pick_dtype(getattr(source, "dtype", None) or self._dtype_setting, self.device, family)
        if not family.tested:
            log.info("model %s is a %s: untested in imagine-bot, rendering with diffusers' defaults",
                     source.name, info.pipeline_class)
        try:
            txt2img = _load_pipeline(source, info, dtype)
        except (OSError, ValueError) as error:  # missing files, not in the offline cache, wrong layout
            log.exception("loading model %s from %s failed", source.name, source.path)
            raise RenderError(f"Model {source.label!r} could not be loaded from {source.path}: {error}") from None
        return self._use(source, info, txt2img, dtype, started)

    def adopt(self, model: str, txt2img: Any) -> float:
        """Make an already built text-to-image pipeline the loaded `model` (its config folder must be
        readable, for the family). For random-weight checks (gpu_check) that build weights in place."""
        self._apply_cpu_threads()
        source, info = self.source(model), self.model_info(model)
        self._sources.setdefault(model, source)
        self.unload()
        parameter = next(iter(txt2img.components[info.family.denoiser].parameters()))
        return self._use(source, info, txt2img, parameter.dtype, time.perf_counter())

    def _use(self, source: ModelSource, info: ModelInfo, txt2img: Any, dtype: torch.dtype, started: float) -> float:
        family = info.family
        txt2img.set_progress_bar_config(disable=True)
        img2img = _img2img_pipeline(txt2img)
        if img2img is not None:
            img2img.set_progress_bar_config(disable=True)
        self._place(txt2img)
        self._speed_up(txt2img, family)
        preview = None
        if family.tested and not family.edits_by_instruction and getattr(txt2img, "vae", None) is not None:
            preview = LatentPreview(txt2img.vae, txt2img.vae_scale_factor, device=txt2img._execution_device)
        load_s = time.perf_counter() - started
        scheduler_config = txt2img.scheduler.config
        self.loaded = LoadedModel(
            source, txt2img, img2img, info.native_size, preview, load_s, info, dtype, scheduler_config
        )
        log.info("loaded model %s (%s) from %s on %s/%s%s in %.2fs", source.name, family.title, source.path,
                 self.device, str(dtype).removeprefix("torch."),
                 f", offload={self.offload}" if self.offload != "none" else "", load_s)
        if self.compile_denoiser:  # compile now, not in the first user's render; larger buckets on first use
            self.warm_up(source.name, batch_sizes=(1, 2, 4))
        return load_s

    def _speed_up(self, pipe: Any, family: Family) -> None:
        """CUDA: channels_last UNet and VAE (attention is already PyTorch's SDPA, diffusers' default), and
        with `compile_denoiser` a regional torch.compile of the denoiser's repeated blocks (one compiled
        block reused N times: seconds to compile, not minutes)."""
        if self.device.type != "cuda" or self.offload != "none":
            return
        denoiser = getattr(pipe, family.denoiser, None)
        if family.denoiser == "unet" and denoiser is not None:
            denoiser.to(memory_format=torch.channels_last)
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            if all(parameter.dim() != 5 for parameter in vae.parameters()):  # Qwen-Image's VAE has 3D convolutions
                vae.to(memory_format=torch.channels_last)
            if hasattr(vae, "enable_slicing"):  # a batch decodes image by image: its peak stays one image's
                vae.enable_slicing()
        if self.compile_denoiser and denoiser is not None:
            if getattr(denoiser, "_repeated_blocks", None):
                denoiser.compile_repeated_blocks(fullgraph=True, dynamic=False)
            else:
                denoiser.compile(dynamic=False)

    def _place(self, pipe: Any) -> None:
        if self.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)

    def _apply_cpu_threads(self) -> None:
        # torch's thread count is per calling thread with OpenMP, so set it on the thread that renders.
        if self.cpu_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(self.cpu_threads)

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
        if not info.family.tested or not _per_image_noise(request.sampler, info.family):
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

    def probe_batch_images(self, model: str, sizes: Sequence[int] = PROBE_SIZES, steps: int = 2) -> dict[int, float]:
        """Images/s at 1, 2, 4, … images per call (native size, `steps` steps), stopping once a size does
        not beat the previous one by 5 %: what BATCH_IMAGES=auto picks from on a CPU (a few seconds)."""
        self.load(model)
        native = self.native_size(model)
        defaults = self.defaults(model)
        request = GenerationRequest(
            "a red circle on a blue background", width=native, height=native, num_inference_steps=steps,
            guidance_scale=defaults["guidance_scale"], sampler=defaults["sampler"], seed=0, model=model,
        )
        self.render_batch([request])  # warm-up: first-call allocations
        rates: dict[int, float] = {}
        best = 0.0
        for size in sizes:
            started = time.perf_counter()
            self.render_batch([request.replace(count=size)])
            rates[size] = size / (time.perf_counter() - started)
            if rates[size] < best * IMPROVEMENT:
                break
            best = max(best, rates[size])
        return rates

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
        self._apply_cpu_threads()
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
        self._apply_loras(split_prompt(lead.prompt).loras)
        self._set_vae_tiling(lead)
        self._set_seamless(lead.tiling)
        slots: list[_Slot] = []
        for number, request in enumerate(requests):
            init_image = _open_init_image(request) if request.init_image is not None else None
            for seed, variation_seed in zip(request.image_seeds(), request.image_variation_seeds()):
                slots.append(_Slot(number, request, seed, variation_seed, init_image))
        per_call = len(slots) if key is not None else 1
        if images_per_call is not None:
            per_call = max(1, min(per_call, images_per_call))
        calls = [slots[start:start + per_call] for start in range(0, len(slots), per_call)]
        progress = _BatchProgress(calls, on_progress)
        outputs: list[tuple[PIL.Image.Image, bool, BatchPlace]] = []
        for number, call in enumerate(calls):
            if is_cancelled is not None and is_cancelled():
                raise RenderCancelled()
            outputs.extend(self._render_call(call, self._step_callback(progress, number, call, is_cancelled), place))
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

    def _set_seamless(self, tiling: bool) -> None:
        """--tile: every convolution pads circularly, so the image wraps around at its edges.

        Set on each call (not left over from the last request). Transformer families (SD3, Flux) have
        few convolutions outside the VAE, so there it makes the decoded edges match but not the layout.
        """
        model = self.loaded
        assert model is not None
        mode: Literal["circular", "zeros"] = "circular" if tiling else "zeros"
        for component in (getattr(model.txt2img, name, None) for name in ("unet", "transformer", "vae")):
            if isinstance(component, torch.nn.Module):
                for module in component.modules():
                    if isinstance(module, torch.nn.Conv2d) and module.padding != (0, 0):
                        module.padding_mode = mode

    def _set_vae_tiling(self, request: GenerationRequest) -> None:
        model = self.loaded
        assert model is not None
        vae = getattr(model.txt2img, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            return
        larger = max(_prepared_size(request)) > model.native_size
        if self.vae_tiling == "on" or (self.vae_tiling == "auto" and larger and self.device.type != "cpu"):
            vae.enable_tiling()
        else:
            vae.disable_tiling()

    def _render_call(
        self, call: list[_Slot], callback: Callable[..., dict], place: BatchPlace | None = None
    ) -> list[tuple[PIL.Image.Image, bool, BatchPlace]]:
        """One pipeline call for `call`'s images: (image, flagged by the pipeline's safety checker, its place).

        Row i of the batch is image i: its own CPU generator (seeded with its seed), starting noise drawn
        from it on the CPU, prompt, negative prompt and init image. `place` pads the call to `place.size`
        rows (copies of the one image) and keeps row `place.index`; with `bucket_batches` a call is padded
        to the next power of two so compiled graphs are reused (the padding rows are thrown away).
        """
        model = self.loaded
        assert model is not None and model.info is not None
        family = model.family
        lead = call[0].request
        width, height = _prepared_size(lead)
        rows, positions = list(call), list(range(len(call)))
        if place is not None:
            rows, positions = [call[0]] * place.size, [place.index]
        elif self.bucket_batches and len(call) > 1:
            rows += [call[-1]] * (bucket(len(call)) - len(call))
        size = len(rows)
        generators = [torch.Generator("cpu").manual_seed(slot.seed) for slot in rows]
        common: dict[str, Any] = dict(
            num_inference_steps=lead.num_inference_steps,
            generator=generators[0] if size == 1 else generators,
            callback_on_step_end=callback,
            **self._text_arguments(lead, rows),
        )
        scheduler = make_scheduler(lead.sampler, model.scheduler_config, seed=rows[0].seed, table=family.samplers)
        if family.edits_by_instruction:  # one image per call: see generation.edit_families
            pictures = [reference.picture() for reference in references_of(lead)]
            output = render_instruction_edit(model.txt2img, family, call[0].init_image, pictures, common, scheduler,
                                             width, height)
            return [(_all_images(output)[0][0], False, BatchPlace())]
        pipes = [pipe for pipe in (model.txt2img, model.img2img) if pipe is not None]
        common.update(self.ip_adapters.call_arguments(pipes, model.source, lead))
        if lead.edit_mode is not None and call[0].init_image is not None:  # zoom, pan, region, blend: one image
            image, output = render_edit(model, lead, call[0].init_image, common, scheduler)
            return [(image, _all_images(output)[1][0], BatchPlace())]
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
            images, flags = _all_images(pipe(**common, width=width, height=height))
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
            images, flags = _all_images(pipe(**common, image=init_images[0] if size == 1 else init_images,
                                             strength=lead.strength))
        return [(images[row], flags[row], BatchPlace(size, row)) for row in positions]

    def _text_arguments(self, lead: GenerationRequest, rows: list[_Slot]) -> dict[str, Any]:
        """prompt/negative_prompt per row (or the shared embeddings of a weighted prompt) plus the family's guidance."""
        model = self.loaded
        assert model is not None
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

    def _apply_loras(self, tags: tuple[LoraTag, ...]) -> None:
        """Load the prompt's LoRAs (peft adapters, kept between requests that ask for them), drop the rest."""
        model = self.loaded
        assert model is not None
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
                path = self.loras.path(name)
                try:
                    pipe.load_lora_weights(str(path), adapter_name=adapter_name(name))
                except (ValueError, KeyError, RuntimeError) as error:
                    log.warning("LoRA %s does not load into %s: %s", name, model.source.name, error)
                    raise RenderError(f"The LoRA {name!r} does not fit {model.source.label}: {error}") from None
                model.adapters[name] = adapter_name(name)
        pipe.set_adapters([model.adapters[name] for name in wanted], adapter_weights=list(wanted.values()))

    def _step_callback(
        self,
        progress: _BatchProgress,
        call_number: int,
        call: list[_Slot],
        is_cancelled: Callable[[], bool] | None,
    ) -> Callable[..., dict]:
        model = self.loaded
        assert model is not None
        preview, family = model.preview, model.family
        width, height = _prepared_size(call[0].request)
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
                if preview is not None and done % self.preview_every == 0 and done < per_call:
                    latents = family.preview_latents(pipe, tensors["latents"], width, height)
                for request_number, row in first_rows.items():
                    image = preview.image(latents[row:row + 1]) if preview is not None and latents is not None else None
                    progress.report(request_number, call_number, done, per_call, image)
            return {}

        return on_step_end


@dataclass(frozen=True)
class _Slot:
    """One image of a batch: which request it belongs to, its seeds and its (opened) init image."""

    request_number: int
    request: GenerationRequest
    seed: int
    variation_seed: int | None
    init_image: PIL.Image.Image | None


class _BatchProgress:
    """Each request's own progress over the calls its images are in: step k of N per call."""

    def __init__(self, calls: list[list[_Slot]], on_progress: BatchProgressCallback | None):
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


def _per_image_noise(sampler: str, family: Family) -> bool:
    """Whether the sampler draws its noise from the per-image generators (all but DPM++ SDE's Brownian tree)."""
    return family.samplers.get(sampler, ("", {}))[0] != "DPMSolverSDEScheduler"

def _load_pipeline(source: ModelSource, info: ModelInfo, dtype: torch.dtype) -> Any:
    """The family's text-to-image pipeline: AutoPipeline for folders and hub ids, from_single_file for a
    checkpoint (with its config folder), or the forced family's class."""
    import diffusers
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING, _get_task_class

    if info.family.edits_by_instruction:
        return load_edit_pipeline(source, info, dtype)
    forced = getattr(source, "family", None)
    class_name = info.family.pipelines[0] if forced else (info.pipeline_class or "StableDiffusionPipeline")
    if source.is_single_file:
        pipeline_class = _get_task_class(AUTO_TEXT2IMAGE_PIPELINES_MAPPING, class_name, False) or getattr(
            diffusers, class_name
        )
        return pipeline_class.from_single_file(source.path, config=source.config, dtype=dtype)
    if forced:
        return getattr(diffusers, class_name).from_pretrained(source.path, dtype=dtype)
    return diffusers.AutoPipelineForText2Image.from_pretrained(source.path, dtype=dtype)


def _img2img_pipeline(txt2img: Any) -> Any | None:
    """The family's image-to-image pipeline over the same modules: no second copy of the weights and no
    cast (AutoPipelineForImage2Image.from_pipe would cast them again, warning on every load)."""
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
    return pipeline_class(**components)


def _first_image(output: Any) -> tuple[PIL.Image.Image, bool]:
    """A pipeline output's image and its safety checker's verdict (`nsfw_content_detected`, where it has one)."""
    flags = getattr(output, "nsfw_content_detected", None)
    return output.images[0], bool(flags[0]) if flags else False


def _all_images(output: Any) -> tuple[list[PIL.Image.Image], list[bool]]:
    """A pipeline output's images and its safety checker's verdict on each (False where it has none)."""
    flags = getattr(output, "nsfw_content_detected", None)
    images = list(output.images)
    return images, [bool(flags[row]) if flags else False for row in range(len(images))]


def _prepared_size(request: GenerationRequest) -> tuple[int, int]:
    assert request.width is not None and request.height is not None, "prepare() chooses the size"
    return request.width, request.height


def _open_init_image(request: GenerationRequest) -> PIL.Image.Image:
    assert request.init_image is not None
    try:
        image: PIL.Image.Image = PIL.Image.open(io.BytesIO(request.init_image)).convert("RGB")
    except Exception:
        raise RenderError("The init image could not be read; use a PNG or JPEG image.") from None
    size = _prepared_size(request)
    if request.edit_mode is not None:  # an edit's source keeps its size: generation.editing places it
        return image
    return image if image.size == size else image.resize(size, PIL.Image.Resampling.LANCZOS)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif torch.backends.mps.is_available():
        torch.mps.empty_cache()
