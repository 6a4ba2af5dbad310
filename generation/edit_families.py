"""Instruction-editing families: the words say what to change in a picture, the model keeps the rest.

    FLUX.1 Kontext      FluxKontextPipeline          12B MMDiT, distilled guidance, one picture
    Qwen-Image-Edit     QwenImageEditPipeline        20B MMDiT + Qwen2.5-VL 7B, true CFG, one picture
    Qwen-Image-Edit+    QwenImageEditPlusPipeline    the same, up to three pictures (edit + references)
    FLUX.2 [klein]      Flux2KleinPipeline           4B, Qwen3 text encoder; words alone or several pictures

With such a model an init image is the picture to edit (no strength: the model decides what to keep),
and the pipeline draws its own starting noise from each image's seeded CPU generator, so a seed means
the same edit on every device. Each image is rendered in a call of its own: these pipelines read a list
of pictures as several references for ONE result, never as a batch of separate edits.

Like generation.families, importing this module does not import torch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from .families import Family, ModelInfo
from .request import GenerationRequest, RequestError
from .samplers import FLOW_SAMPLERS


@dataclass(frozen=True)
class EditFamily(Family):
    """A family whose pipeline edits a picture by instruction (`edits_by_instruction`)."""

    needs_image: bool = True  # Kontext and Qwen-Image-Edit only edit; klein also draws from words alone
    guidance_argument: str = "guidance_scale"  # Qwen-Image-Edit: true CFG ("true_cfg_scale")
    pictures_per_call: int = 1  # the edited picture plus references the pipeline takes in one call
    memory_gb: float = 0.0  # bf16 weights on one GPU, an estimate until measured (README: memory of the edit models)
    min_picture_side: int = 0  # FLUX.2 refuses pictures under 64 px a side
    min_steps: int = 1  # Qwen-Image's terminal time shift divides by zero with one step
    prompt_tokenizer: str | None = None  # no length check: the pipeline reads its own text encoder's share

    def check_request(self, request: GenerationRequest, info: ModelInfo) -> None:
        super().check_request(request, info)
        if request.variation_strength > 0:
            raise RequestError(
                f"Variations are not available for {info.label} ({self.title}); it draws its own noise. "
                "Reroll with another seed instead."
            )
        if request.edit_mode not in (None, "instruction"):
            raise RequestError(
                f"{info.label} ({self.title}) edits by instruction, not by canvas ({request.edit_mode}); "
                "describe the change in words instead."
            )
        # edit_mode "instruction" without the picture: it is still to download (the bot's job does that)
        if self.needs_image and request.init_image is None and request.edit_mode != "instruction":
            raise RequestError(
                f"{info.label} ({self.title}) edits a picture: attach one (init image) and say what to change."
            )
        if request.num_inference_steps < self.min_steps:
            raise RequestError(f"{info.label} ({self.title}) needs at least {self.min_steps} steps.")
        for what, data in (("picture", request.init_image), ("style reference", request.sref_image),
                           ("object reference", request.oref_image)):
            if data is not None and self.min_picture_side and min(_size(data)) < self.min_picture_side:
                raise RequestError(f"{info.label} ({self.title}) needs a {what} at least {self.min_picture_side} "
                                   f"pixels wide and high; this one is {'x'.join(map(str, _size(data)))}.")

    def defaults(self, info: ModelInfo) -> dict[str, Any]:
        return {"num_inference_steps": self.default_steps, "guidance_scale": self.default_guidance,
                "sampler": self.default_sampler}

    def call_arguments(self, request: GenerationRequest, info: ModelInfo) -> dict[str, Any]:
        if self.guidance_argument != "true_cfg_scale":
            return super().call_arguments(request, info)
        # Qwen-Image-Edit: CFG runs only with a negative prompt; an empty one is the plain unconditional.
        arguments: dict[str, Any] = {"true_cfg_scale": request.guidance_scale}
        if request.guidance_scale > 1:
            arguments["negative_prompt"] = request.negative_prompt or " "
        return arguments

    def preview_latents(self, pipe: Any, latents: Any, width: int, height: int) -> Any:
        return None  # packed latents of several pictures: no linear preview

    def render_call(self, pipe: Any, pictures: list[Any], common: dict[str, Any], width: int, height: int) -> Any:
        """One image: `pictures` is [the picture to edit, *references] (empty: words alone, klein).

        `common` holds the renderer's arguments for one image (prompt, steps, its generator, callback)."""
        arguments = dict(common, width=width, height=height)
        parameters = inspect.signature(pipe.__call__).parameters
        if "max_area" in parameters:  # Kontext: the output area is the requested one
            arguments["max_area"] = width * height
        if pictures:
            arguments["image"] = pictures[0] if len(pictures) == 1 else list(pictures)
        return pipe(**arguments)


def _only(*names: str) -> tuple[str, ...]:
    return tuple(name for name in FLOW_SAMPLERS if name not in names)


KONTEXT = EditFamily(
    "kontext", "FLUX.1 Kontext",
    ("FluxKontextPipeline",),
    FLOW_SAMPLERS, "Euler", 28, 2.5, "distilled", "true_cfg", "transformer",
    latent_packing=2, size_multiple=16, cuda_dtype="bfloat16", text_window=512, default_size=1024,
    excluded_samplers=("Heun",), prompt_weights=False, edits_by_instruction=True, memory_gb=34,
)
QWEN_EDIT = EditFamily(
    "qwen-edit", "Qwen-Image-Edit",
    ("QwenImageEditPipeline", "QwenImageEditPlusPipeline"),
    FLOW_SAMPLERS, "Euler", 50, 4.0, "cfg", "cfg", "transformer",
    latent_packing=2, size_multiple=16, cuda_dtype="bfloat16", default_size=1024,
    excluded_samplers=_only("Euler"),  # its exponential time shift lives in FlowMatchEuler only
    prompt_weights=False, edits_by_instruction=True, guidance_argument="true_cfg_scale", memory_gb=58, min_steps=2,
)
KLEIN = EditFamily(
    "klein", "FLUX.2 [klein]",
    ("Flux2KleinPipeline",),
    FLOW_SAMPLERS, "Euler", 4, 1.0, "distilled", "none", "transformer",
    latent_packing=2, size_multiple=16, cuda_dtype="bfloat16", text_window=512, default_size=1024,
    excluded_samplers=_only("Euler"), prompt_weights=False, edits_by_instruction=True, needs_image=False,
    pictures_per_call=4, memory_gb=16, min_picture_side=64,
)
EDIT_FAMILIES: tuple[EditFamily, ...] = (KONTEXT, QWEN_EDIT, KLEIN)
# Qwen-Image-Edit Plus takes the edited picture and up to two references; the first version one picture.
PICTURES_PER_PIPELINE = {"QwenImageEditPlusPipeline": 3}


def pictures_per_call(info: ModelInfo) -> int:
    """How many pictures (the edited one plus references) `info`'s pipeline takes in one call."""
    family = info.family
    if not isinstance(family, EditFamily):
        return 0
    return PICTURES_PER_PIPELINE.get(info.pipeline_class, family.pictures_per_call)


def load_edit_pipeline(source: Any, info: ModelInfo, dtype: Any) -> Any:
    """The family's pipeline class from model_index.json (AutoPipeline has no text-to-image entry for
    Qwen-Image-Edit). A single .safetensors file is the transformer: the rest comes from `config`."""
    import diffusers

    class_name = info.pipeline_class if info.pipeline_class in info.family.pipelines else info.family.pipelines[0]
    pipeline_class = getattr(diffusers, class_name)
    config = source.config_source
    components: dict[str, Any] = {}
    if class_name.startswith("QwenImageEdit"):
        from .local_qwen import load_processor

        components["processor"] = load_processor(config)  # no video processor (it needs torchvision)
    if source.is_single_file:
        if hasattr(pipeline_class, "from_single_file") and not components:
            return pipeline_class.from_single_file(source.path, config=config, dtype=dtype)
        transformer_class = getattr(diffusers, _transformer_class(config))
        components["transformer"] = transformer_class.from_single_file(
            source.path, config=config, subfolder="transformer", dtype=dtype
        )
    return pipeline_class.from_pretrained(config, dtype=dtype, **components)


def _transformer_class(config: str) -> str:
    from .families import _read_json

    return str(_read_json(config, "transformer/config.json")["_class_name"])


def register() -> None:
    """Make the edit families known to family detection and the models file (generation/__init__ calls it)."""
    from .families import FAMILIES

    for family in EDIT_FAMILIES:
        FAMILIES.setdefault(family.key, family)


def _size(data: bytes) -> tuple[int, int]:
    import io

    import PIL.Image

    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        raise RequestError("A picture is not a readable image; use a PNG or JPEG file.") from None


def picture_size(data: bytes, multiple: int) -> tuple[int, int]:
    """The size an instruction edit of this picture renders at: the picture's own, rounded down to the
    family's multiple (an edit keeps the size)."""
    width, height = _size(data)
    return max(multiple, width // multiple * multiple), max(multiple, height // multiple * multiple)


def render_instruction_edit(pipe: Any, family: Family, picture: Any, references: list[Any], common: dict[str, Any],
                            scheduler: Any, width: int, height: int) -> Any:
    """One instruction edit (or, for klein without a picture, a text-to-image render) with `scheduler`."""
    assert isinstance(family, EditFamily)
    pipe.scheduler = scheduler
    pictures = ([picture] if picture is not None else []) + list(references)
    return family.render_call(pipe, pictures, common, width, height)
