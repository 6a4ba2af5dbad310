"""Model families: one object per family says what it supports and how it is driven.

    SD 1.x/2.x   StableDiffusionPipeline     UNet, CFG, 4 latent channels
    SDXL         StableDiffusionXLPipeline   UNet + two CLIP encoders, CFG, 4 channels
    SD3 / 3.5    StableDiffusion3Pipeline    MMDiT, flow matching, CFG, 16 channels
    Flux.1       FluxPipeline                MMDiT, flow matching, distilled guidance, 16 channels packed 2x2

The renderer never branches on the family itself: it asks the family for samplers, defaults, the
starting noise, the pipeline arguments and the preview latents. Other pipelines that diffusers'
AutoPipeline knows load as the "untested" family (the pipeline's own noise, no previews, no
variations); anything else is refused with a `RequestError` naming the pipeline class.

Importing this module does not import torch: `read_model_info` reads small JSON files only, so the
CLI and the bot can check a request against a family before torch loads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .models import ModelSource, check_source
from .prompts import has_weights, parse_attention, split_prompt
from .request import GenerationRequest, RequestError
from .samplers import FLOW_SAMPLERS, SD_SAMPLERS
from .size_limits import check_model_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    key: str  # "sd", "sdxl", "sd3", "flux", "other"
    title: str  # for messages: "SDXL"
    pipelines: tuple[str, ...]  # model_index.json class names that belong to this family
    samplers: dict[str, tuple[str, dict[str, Any]]]  # A1111 name -> (scheduler class, overrides)
    default_sampler: str
    default_steps: int
    default_guidance: float
    guidance: str  # "cfg": classifier-free guidance; "distilled": Flux's guidance embedding
    negative_prompt: str  # "cfg": with the guidance; "true_cfg": Flux's true CFG (a second pass per step)
    denoiser: str  # "unet" or "transformer"
    latent_packing: int = 1  # Flux packs 2x2 latent patches into one token
    size_multiple: int = 8  # width and height must be multiples of this
    cuda_dtype: str = "float16"  # "auto" dtype on CUDA
    text_window: int | None = None  # T5 tokens read (None: CLIP's 77-token window)
    default_size: int | None = None  # native side when the config has none (Flux: 1024)
    tested: bool = True
    excluded_samplers: tuple[str, ...] = ()
    prompt_weights: bool = True  # A1111 (word:1.3) through compel (SD, SDXL, Flux)
    # The tokenizer whose window limits a prompt (its subfolder): CLIP where text_window is None, else T5.
    # None: no length check (untested families; the pipeline truncates as it does).
    prompt_tokenizer: str | None = "tokenizer"
    img2img_takes_size: bool = False  # the img2img pipeline takes width and height (SD3, Flux)
    # An init image is a picture to change as the words say (generation.edit_families: Kontext, Qwen-Image-Edit,
    # FLUX.2 [klein]); the conversation interpreter and the Edit form read this.
    edits_by_instruction: bool = False

    @property
    def sampler_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.samplers if name not in self.excluded_samplers)

    @property
    def flow_matching(self) -> bool:
        return self.samplers is FLOW_SAMPLERS

    # -- what a model of this family needs from a request --

    def check_request(self, request: GenerationRequest, info: ModelInfo) -> None:
        """RequestError when the request asks for something this family cannot do, naming what is allowed."""
        samplers = info.sampler_names
        if request.edit_mode == "instruction" and not self.edits_by_instruction:
            raise RequestError(
                f"{info.label} ({self.title}) does not edit by instruction; use a model that does (FLUX.1 Kontext, "
                "Qwen-Image-Edit, FLUX.2 [klein]), or /imagine with an init image and a strength."
            )
        if request.sampler not in samplers:
            raise RequestError(
                f"The sampler {request.sampler!r} does not work with {info.label} ({self.title}); "
                f"choose one of: {', '.join(samplers)}."
            )
        if request.negative_prompt and self.negative_prompt == "true_cfg" and info.true_cfg_scale <= 1:
            raise RequestError(
                f"{info.label} ({self.title}) has no negative prompt: its guidance is distilled, and true CFG "
                "is off for this model. Remove the negative prompt (--no)."
            )
        if request.negative_prompt and self.negative_prompt == "none":
            raise RequestError(f"{info.label} ({self.title}) does not take a negative prompt; remove it (--no).")
        multiple = self.size_multiple
        for name in ("width", "height"):
            value = getattr(request, name)
            if isinstance(value, int) and value % multiple:
                lower, upper = value // multiple * multiple, (value // multiple + 1) * multiple
                raise RequestError(
                    f"{info.label} ({self.title}) needs a {name} that is a multiple of {multiple}; "
                    f"{value} is not (try {lower} or {upper})."
                )
        parts = split_prompt(request.prompt)
        if (parts.weighted or has_weights(request.negative_prompt)) and not self.prompt_weights:
            raise RequestError(
                f"Prompt weights like (word:1.3) or [word] are not available for {info.label} ({self.title}); "
                "remove the brackets, or write \\( and \\) for literal brackets."
            )
        if not self.tested and request.variation_strength > 0:
            raise RequestError(f"Variations are not available for {info.label} ({info.pipeline_class}).")
        if request.init_image is not None and not info.img2img:
            raise RequestError(f"{info.label} ({info.pipeline_class}) has no image-to-image pipeline; remove the image.")
        check_model_size(request, info.max_size, info.label)

    def defaults(self, info: ModelInfo) -> dict[str, Any]:
        """Request fields for a model of this family that nobody configured (steps, guidance, sampler)."""
        steps, guidance = self.default_steps, self.default_guidance
        if self.key == "flux" and not info.guidance_embeds:  # FLUX.1-schnell: 4 steps, no guidance input
            steps, guidance = 4, 0.0
        sampler = self.default_sampler if self.default_sampler in info.sampler_names else info.sampler_names[0]
        return {"num_inference_steps": steps, "guidance_scale": guidance, "sampler": sampler}

    # -- rendering (torch from here on; called on the worker thread with a loaded pipeline) --

    def initial_noise(
        self, pipe: Any, width: int, height: int, generator: Any, variation_seed: int | None, strength: float
    ) -> Any:
        """Starting latents for one image, drawn on the CPU in float32 from the image's generator, in the
        shape (and packing) the pipeline itself draws, so the A1111 variation slerp works in this
        family's latent space. The generator is left advanced, as the pipeline would leave it."""
        import torch

        from .latents import initial_noise, slerp

        if self.denoiser == "unet":
            # What StableDiffusion(XL)Pipeline.prepare_latents draws (it scales by init_noise_sigma itself).
            factor = pipe.vae_scale_factor
            shape = (1, pipe.unet.config.in_channels, height // factor, width // factor)
            return initial_noise(shape, generator, variation_seed, strength)

        def draw(gen: Any) -> torch.Tensor:
            channels = pipe.transformer.config.in_channels // (self.latent_packing**2)
            drawn = pipe.prepare_latents(1, channels, height, width, torch.float32, torch.device("cpu"), gen)
            return drawn[0] if isinstance(drawn, tuple) else drawn  # Flux also returns the position ids

        noise = draw(generator)
        if variation_seed is None:
            return noise
        return slerp(strength, noise, draw(torch.Generator("cpu").manual_seed(variation_seed)))

    def call_arguments(self, request: GenerationRequest, info: ModelInfo) -> dict[str, Any]:
        """Pipeline arguments that depend on the family (guidance, negative prompt, text window)."""
        arguments: dict[str, Any] = {"guidance_scale": request.guidance_scale}
        if self.negative_prompt == "cfg":
            arguments["negative_prompt"] = request.negative_prompt or None
        elif self.negative_prompt == "true_cfg" and request.negative_prompt:
            arguments["negative_prompt"] = request.negative_prompt
            arguments["true_cfg_scale"] = info.true_cfg_scale
        if self.text_window is not None:
            arguments["max_sequence_length"] = info.text_window
        return arguments

    def weighted_arguments(self, pipe: Any, prompt: str, negative_prompt: str, info: ModelInfo) -> dict[str, Any]:
        """Prompt embeddings for A1111 attention weights, through compel (replaces prompt/negative_prompt)."""
        import compel
        from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment

        def parse(text: str) -> Any:  # A1111's syntax instead of compel's own
            return Conjunction([FlattenedPrompt([Fragment(chunk, weight) for chunk, weight in parse_attention(text)])])

        device = pipe._execution_device
        wrapper_class = {"sd": compel.CompelForSD, "sdxl": compel.CompelForSDXL, "flux": compel.CompelForFlux}[self.key]
        wrapper = wrapper_class(pipe, device=device)
        for name in ("compel", "compel_1", "compel_2"):
            if hasattr(wrapper, name):
                getattr(wrapper, name).parse_prompt_string = parse
        use_negative = self.negative_prompt == "cfg" or bool(negative_prompt)
        conditioning = wrapper(prompt, negative_prompt=negative_prompt if use_negative else None)
        arguments: dict[str, Any] = {"prompt_embeds": conditioning.embeds}
        if conditioning.pooled_embeds is not None:
            arguments["pooled_prompt_embeds"] = conditioning.pooled_embeds
        if use_negative and conditioning.negative_embeds is not None:
            arguments["negative_prompt_embeds"] = conditioning.negative_embeds
            if conditioning.negative_pooled_embeds is not None:
                arguments["negative_pooled_prompt_embeds"] = conditioning.negative_pooled_embeds
        return arguments

    def preview_latents(self, pipe: Any, latents: Any, width: int, height: int) -> Any:
        """The latents of a step as (batch, channels, h, w), for the linear preview."""
        if self.latent_packing > 1:
            return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        return latents

    def denoising_steps(self, steps: int, strength: float) -> int:
        """Steps img2img runs at `strength` (0: none; the renderer then returns the init image)."""
        if self.flow_matching:  # SD3/Flux img2img: t_start = int(steps - steps * strength)
            return steps - int(max(steps - steps * strength, 0))
        return min(int(steps * strength), steps)


SD = Family(
    "sd", "Stable Diffusion 1.x/2.x",
    ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    SD_SAMPLERS, "DPM++ 2M", 25, 7.0, "cfg", "cfg", "unet",
)
SDXL = Family(
    "sdxl", "SDXL",
    ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
    SD_SAMPLERS, "DPM++ 2M Karras", 30, 7.0, "cfg", "cfg", "unet",
)
SD3 = Family(
    "sd3", "SD3",
    ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
    FLOW_SAMPLERS, "Euler", 28, 5.0, "cfg", "cfg", "transformer",
    size_multiple=16, cuda_dtype="bfloat16", text_window=256,
    prompt_weights=False,  # compel has no SD3 support
    prompt_tokenizer="tokenizer_3", img2img_takes_size=True,
)
FLUX = Family(
    "flux", "Flux.1",
    ("FluxPipeline", "FluxImg2ImgPipeline"),
    FLOW_SAMPLERS, "Euler", 28, 3.5, "distilled", "true_cfg", "transformer",
    latent_packing=2, size_multiple=16, cuda_dtype="bfloat16", text_window=512, default_size=1024,
    excluded_samplers=("Heun",),  # FlowMatchHeun takes no custom sigmas, which FluxPipeline passes
    prompt_tokenizer="tokenizer_2", img2img_takes_size=True,
)
FAMILIES: dict[str, Family] = {family.key: family for family in (SD, SDXL, SD3, FLUX)}
SUPPORTED = ("SD 1.x/2.x, SDXL, SD3/3.5, Flux.1, and for instruction edits FLUX.1 Kontext, "
             "Qwen-Image-Edit (and Plus) and FLUX.2 [klein]")
FLUX_TRUE_CFG_SCALE = 4.0  # true CFG with a negative prompt (each step runs twice)


def other_family(flow_matching: bool) -> Family:
    """A pipeline AutoPipeline knows but we have not tested: its own noise, no previews or variations."""
    if flow_matching:
        return Family("other", "untested", (), FLOW_SAMPLERS, "Euler", 28, 4.0, "cfg", "cfg", "transformer",
                      size_multiple=16, cuda_dtype="bfloat16", tested=False, excluded_samplers=("Heun",),
                      prompt_weights=False, prompt_tokenizer=None)
    return Family("other", "untested", (), SD_SAMPLERS, "DPM++ 2M", 25, 7.0, "cfg", "cfg", "unet", tested=False,
                  prompt_weights=False, prompt_tokenizer=None)


def family_for_pipeline(class_name: str) -> Family | None:
    for family in FAMILIES.values():
        if class_name in family.pipelines:
            return family
    return None


@dataclass(frozen=True)
class ModelInfo:
    """What a model's config files say, read before (and without) loading it."""

    name: str
    label: str  # display name for messages
    family: Family
    pipeline_class: str  # model_index.json's _class_name ("" for a single file without configs)
    native_size: int
    latent_channels: int
    guidance_embeds: bool = False  # Flux dev (True) vs schnell (False)
    true_cfg_scale: float = FLUX_TRUE_CFG_SCALE
    text_window: int | None = None
    img2img: bool = True
    max_size: int | None = None  # the model entry's limit on a side (generation.size_limits)
    scheduler_class: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sampler_names(self) -> tuple[str, ...]:
        return self.family.sampler_names

    def defaults(self) -> dict[str, Any]:
        return self.family.defaults(self)


def _read_json(config_source: str, filename: str) -> dict[str, Any]:
    """A config file of a local folder or a hub id (offline: from the cache only)."""
    local = Path(config_source) / filename
    if Path(config_source).is_dir():
        if not local.exists():
            raise FileNotFoundError(str(local))
        return json.loads(local.read_text())
    from huggingface_hub import hf_hub_download  # light: no torch

    return json.loads(Path(hf_hub_download(config_source, filename)).read_text())


def read_model_info(source: ModelSource) -> ModelInfo:
    """Family, native size and other facts of a model from its config files; RequestError if unusable."""
    check_source(source)
    label = source.label
    override = source.forced_family()
    if source.is_single_file and source.config is None:
        # diffusers guesses the configs of a single file (from the hub); only SD 1.x/2.x without a folder
        family = FAMILIES.get(override or "sd")
        if family is None:
            raise RequestError(f"Model {label!r}: unknown family {override!r}; use one of: {', '.join(FAMILIES)}.")
        return ModelInfo(source.name, label, family, "", 512, 4)
    config = source.config_source
    try:
        if Path(config).is_dir() and not (Path(config) / "model_index.json").exists() and (
            Path(config) / "unet" / "config.json"
        ).exists():  # component configs without model_index.json: an SD 1.x/2.x layout
            index: dict[str, Any] = {"_class_name": "StableDiffusionPipeline", "unet": [], "vae": []}
        else:
            index = _read_json(config, "model_index.json")
    except Exception as error:
        raise RequestError(
            f"Model {label!r} could not be read: no model_index.json in {config} ({type(error).__name__}). "
            "Give a diffusers folder, a hub id, or a .safetensors file with a config folder."
        ) from None
    class_name: str = index.get("_class_name", "")
    family = FAMILIES.get(override) if override else family_for_pipeline(class_name)
    if override and family is None:
        raise RequestError(f"Model {label!r}: unknown family {override!r}; use one of: {', '.join(FAMILIES)}.")
    img2img = True
    if family is None:
        text2image, has_img2img = _auto_pipeline_names(class_name)
        if not text2image:
            raise RequestError(
                f"Model {label!r} is a {class_name or 'model without a pipeline class'}, which imagine-bot "
                f"cannot render; supported families: {SUPPORTED}."
            )
        scheduler = index.get("scheduler", [None, ""])[1] or ""
        family = other_family(scheduler.startswith("FlowMatch"))
        img2img = has_img2img
    return _info_from_configs(source, label, family, class_name, index, img2img)


def _info_from_configs(
    source: ModelSource, label: str, family: Family, class_name: str, index: dict[str, Any], img2img: bool
) -> ModelInfo:
    config = source.config_source
    try:
        vae = _read_json(config, "vae/config.json") if "vae" in index else {}
        denoiser = _read_json(config, f"{family.denoiser}/config.json") if family.denoiser in index else {}
    except Exception as error:
        raise RequestError(f"Model {label!r}: a component config is missing or unreadable ({error}).") from None
    scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    sample_size = denoiser.get("sample_size")
    native = family.default_size or (sample_size * scale if isinstance(sample_size, int) else 1024)
    size = getattr(source, "size", None)
    if size:
        native = size
    channels = vae.get("latent_channels", 4)
    window = None
    if family.text_window is not None:
        window = family.text_window
        if family.key == "flux" and not denoiser.get("guidance_embeds", False):
            window = 256  # FLUX.1-schnell reads at most 256 T5 tokens
    true_cfg = getattr(source, "true_cfg_scale", None)
    extra: dict[str, Any] = {}  # widths a LoRA must match
    if "cross_attention_dim" in denoiser:
        extra["cross_attention_dim"] = denoiser["cross_attention_dim"]
    if family.denoiser == "unet" and isinstance(denoiser.get("block_out_channels"), list):
        extra["block_out_channels"] = denoiser["block_out_channels"]
    if "num_attention_heads" in denoiser and "attention_head_dim" in denoiser:
        heads, head_dim = denoiser["num_attention_heads"], denoiser["attention_head_dim"]
        if isinstance(heads, int) and isinstance(head_dim, int):
            extra["inner_dim"] = heads * head_dim
    return ModelInfo(
        name=source.name,
        label=label,
        family=family,
        pipeline_class=class_name,
        native_size=native,
        latent_channels=channels,
        guidance_embeds=bool(denoiser.get("guidance_embeds", False)),
        true_cfg_scale=FLUX_TRUE_CFG_SCALE if true_cfg is None else float(true_cfg),
        text_window=window,
        img2img=img2img,
        scheduler_class=(index.get("scheduler") or [None, ""])[1] or "",
        extra=extra,
        max_size=source.size_limit(),
    )


def _auto_pipeline_names(class_name: str) -> tuple[bool, bool]:
    """Whether AutoPipelineForText2Image / AutoPipelineForImage2Image can load `class_name` (imports diffusers)."""
    from diffusers.pipelines import auto_pipeline

    def task(mapping: Any) -> bool:
        try:
            return auto_pipeline._get_task_class(mapping, class_name, throw_error_if_not_exist=False) is not None
        except Exception:
            return False

    return task(auto_pipeline.AUTO_TEXT2IMAGE_PIPELINES_MAPPING), task(auto_pipeline.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING)
