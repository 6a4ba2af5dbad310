"""Load a Stable Diffusion pipeline and run one request: load -> call -> progress -> cancel.

Everything here runs on the service's single worker thread, except `tokenizer()` and
`native_size()`, which read small files and never touch the loaded pipeline.

Reproducibility: image i of a request is rendered alone (batch of 1) from a fresh CPU
`torch.Generator().manual_seed(seed_i)`. Its starting latents are drawn from that generator on the
CPU, so a seed gives the same picture on every device, and any image of a count=4 request can be
rendered again bit-exact with count=1.
"""

from __future__ import annotations

import gc
import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import PIL.Image
import torch
from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTokenizer

from .latents import LatentPreview, initial_noise
from .models import ModelSource, model_source
from .request import GenerationRequest, Progress, RenderCancelled, RenderedImage, RenderError, RenderResult
from .samplers import make_scheduler

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":  # fp16 halves memory and time on CUDA; CPUs and MPS are safest in fp32
        return torch.float16 if device.type == "cuda" else torch.float32
    names = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in names:
        raise ValueError(f"Unknown dtype {dtype!r}. Use one of: auto, {', '.join(names)}.")
    return names[dtype]


@dataclass
class LoadedModel:
    source: ModelSource
    txt2img: StableDiffusionPipeline
    img2img: StableDiffusionImg2ImgPipeline  # the same components, no second copy of the weights
    native_size: int
    preview: LatentPreview
    load_s: float


class Renderer:
    """Keeps one model loaded and renders requests with it, switching models on demand."""

    def __init__(
        self,
        model: str | ModelSource = "tinyshapes",
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        extra_models: tuple[str | ModelSource, ...] = (),
        preview_every: int = 5,
        cpu_threads: int | None = None,
    ):
        default = model_source(model)
        self.default_model = default.name
        self._sources = {source.name: source for source in map(model_source, (default, *extra_models))}
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.preview_every = preview_every
        # On a shared or small CPU, fewer torch threads can be much faster (less oversubscription).
        self.cpu_threads = cpu_threads
        self.loaded: LoadedModel | None = None
        self._tokenizers: dict[str, CLIPTokenizer] = {}
        self._native_sizes: dict[str, int] = {}
        self._tokenizer_lock = threading.Lock()

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def source(self, name: str) -> ModelSource:
        return self._sources.get(name) or model_source(name)

    # -- cheap lookups for validation (no pipeline needed) --

    def tokenizer(self, model: str) -> CLIPTokenizer:
        """The model's tokenizer, loaded on its own so prompts can be checked without the pipeline."""
        with self._tokenizer_lock:
            if model not in self._tokenizers:
                config = self.source(model).config_source
                self._tokenizers[model] = CLIPTokenizer.from_pretrained(config, subfolder="tokenizer")
            return self._tokenizers[model]

    def native_size(self, model: str) -> int:
        """Side of the square images the model was trained on: unet sample_size x VAE scale factor."""
        loaded = self.loaded
        if loaded is not None and loaded.source.name == model:
            return loaded.native_size
        if model not in self._native_sizes:
            config = self.source(model).config_source
            unet = UNet2DConditionModel.load_config(config, subfolder="unet")
            vae = AutoencoderKL.load_config(config, subfolder="vae")
            self._native_sizes[model] = unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
        return self._native_sizes[model]

    # -- loading --

    def load(self, model: str) -> float:
        """Make `model` the loaded one; returns the seconds spent loading (0 if it already was)."""
        if self.loaded is not None and self.loaded.source.name == model:
            return 0.0
        self._apply_cpu_threads()
        source = self.source(model)
        self.unload()  # one model at a time: free the old weights before reading the new ones
        started = time.perf_counter()
        try:
            if source.is_single_file:
                txt2img = StableDiffusionPipeline.from_single_file(source.path, config=source.config, dtype=self.dtype)
            else:
                txt2img = StableDiffusionPipeline.from_pretrained(source.path, dtype=self.dtype)
        except (OSError, ValueError) as error:  # missing files, not in the offline cache, wrong layout
            log.exception("loading model %s from %s failed", source.name, source.path)
            raise RenderError(f"Model {source.name!r} could not be loaded from {source.path}: {error}") from None
        txt2img.to(self.device)
        txt2img.set_progress_bar_config(disable=True)
        # The same modules, no second copy and no cast (from_pipe would cast them again, warning on every load).
        img2img = StableDiffusionImg2ImgPipeline(
            **txt2img.components, requires_safety_checker=txt2img.config.requires_safety_checker
        )
        img2img.set_progress_bar_config(disable=True)
        native_size = txt2img.unet.config.sample_size * txt2img.vae_scale_factor
        preview = LatentPreview(txt2img.vae, txt2img.vae_scale_factor)
        load_s = time.perf_counter() - started
        self.loaded = LoadedModel(source, txt2img, img2img, native_size, preview, load_s)
        log.info("loaded model %s from %s on %s/%s in %.2fs", source.name, source.path, self.device, self.dtype, load_s)
        return load_s

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

    def render(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback | None = None,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> RenderResult:
        """Render a prepared request (seed and size chosen). Raises RenderCancelled or RenderError."""
        if request.seed is None or request.width is None or request.height is None:
            raise ValueError("render() needs a prepared request (seed and size set); use GenerationService.prepare")
        try:
            return self._render_images(request, on_progress, is_cancelled)
        except torch.OutOfMemoryError:
            pass  # free memory after the handler: until then its traceback keeps the tensors alive
        free_memory()
        raise RenderError(
            f"Ran out of GPU memory rendering {request.count} image(s) at {request.width}x{request.height}; "
            "try a smaller size or fewer images.",
            retryable=True,
        )

    def _render_images(
        self,
        request: GenerationRequest,
        on_progress: ProgressCallback | None,
        is_cancelled: Callable[[], bool] | None,
    ) -> RenderResult:
        self._apply_cpu_threads()
        load_s = self.load(request.model)
        started = time.perf_counter()
        init_image = _open_init_image(request) if request.init_image is not None else None
        images = []
        seeds = zip(request.image_seeds(), request.image_variation_seeds())
        for index, (seed, variation_seed) in enumerate(seeds):
            if is_cancelled is not None and is_cancelled():
                raise RenderCancelled()
            callback = self._step_callback(index, request.count, on_progress, is_cancelled)
            image = self._render_one(request, seed, variation_seed, init_image, callback)
            if is_cancelled is not None and is_cancelled():
                raise RenderCancelled()
            strength = request.variation_strength if variation_seed is not None else 0.0
            images.append(RenderedImage(image, seed, variation_seed, strength))
        return RenderResult(request, images, time.perf_counter() - started, load_s)

    def _render_one(
        self,
        request: GenerationRequest,
        seed: int,
        variation_seed: int | None,
        init_image: PIL.Image.Image | None,
        callback: Callable[..., dict],
    ) -> PIL.Image.Image:
        model = self.loaded
        assert model is not None
        generator = torch.Generator("cpu").manual_seed(seed)
        common: dict[str, Any] = dict(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            generator=generator,
            callback_on_step_end=callback,
        )
        scheduler = make_scheduler(request.sampler, model.txt2img.scheduler.config, seed=seed)
        if init_image is None:
            factor = model.txt2img.vae_scale_factor
            shape = (1, model.txt2img.unet.config.in_channels, request.height // factor, request.width // factor)
            latents = initial_noise(shape, generator, variation_seed, request.variation_strength)
            model.txt2img.scheduler = scheduler
            output = model.txt2img(
                **common,
                width=request.width,
                height=request.height,
                latents=latents.to(self.device, self.dtype),
            )
            return output.images[0]
        if int(request.num_inference_steps * request.strength) == 0:
            # No denoising step runs at this strength (diffusers would reject it): the image is unchanged.
            return init_image.copy()
        model.img2img.scheduler = scheduler
        return model.img2img(**common, image=init_image, strength=request.strength).images[0]

    def _step_callback(
        self,
        index: int,
        count: int,
        on_progress: ProgressCallback | None,
        is_cancelled: Callable[[], bool] | None,
    ) -> Callable[..., dict]:
        preview = self.loaded.preview  # type: ignore[union-attr]

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            if is_cancelled is not None and is_cancelled():
                pipe._interrupt = True  # diffusers skips the remaining steps
                return {}
            if on_progress is not None:
                per_image = pipe.num_timesteps
                done = step + 1
                image = None
                if done % self.preview_every == 0 and done < per_image:
                    image = preview.image(tensors["latents"])
                on_progress(Progress(index * per_image + done, count * per_image, image))
            return {}

        return on_step_end


def _open_init_image(request: GenerationRequest) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(io.BytesIO(request.init_image))
        image = image.convert("RGB")
    except Exception:
        raise RenderError("The init image could not be read; attach a PNG or JPEG file.") from None
    size = (request.width, request.height)
    return image if image.size == size else image.resize(size, PIL.Image.LANCZOS)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif torch.backends.mps.is_available():
        torch.mps.empty_cache()
