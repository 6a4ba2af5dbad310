"""Masked edits of an image — Zoom Out, Make Square, Pan, Vary (Region) — and /blend.

An edit request records only its parameters (`edit_mode`, `edit_factor`, `edit_direction`,
`edit_region`), the canvas size (`width`, `height`), the seed, and the source image as its init image.
The canvas and the mask are derived from those here, deterministically, so an edit re-renders
bit-exact like any other request:

- zoom / square / pan: the source is placed on a larger canvas (centred; for a pan, against the side
  away from the new strip) and the rest is the mask. A source too large for the limits is scaled down
  first. `outpaint.py` then fills the new area with the scene's background and adds the source's
  thin border band to the repainted area, converts the strength to the model's noise schedule and
  matches the repainted tone to the source's (see there why).
- region: the canvas is the source; the mask is the chosen cells of a 3×3 grid.
- blend: the init image holds the 2–5 sources side by side, each at the canvas size; they are encoded
  with the model's VAE, averaged in latent space, decoded, and that picture is the image-to-image start.

The masked area is repainted by the family's inpainting pipeline built from the loaded components
(diffusers' `AutoPipelineForInpainting` mapping: SD, SDXL, SD3 and Flux). With an inpainting checkpoint
(9-channel UNet) that is true inpainting; with an ordinary checkpoint the same pipeline does masked
image-to-image with latent blending (after every step the known region is put back, noised to the
current timestep). The result is then laid over the canvas through a feathered mask: known pixels stay
exactly as they were and the seam fades over a few pixels.

This module imports torch only inside the render functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image

from .describe import blend_prompt
from .outpaint import match_tone, outpaint_canvas, outpaint_steps, schedule_strength
from .request import RequestError

if TYPE_CHECKING:
    from .request import GenerationRequest, Limits

EDIT_MODES = ("zoom", "square", "pan", "region", "blend")
# An instruction edit (generation.edit_families): the init image is the picture to change, the prompt says
# how; recorded like the canvas edits so Info, /history and the PNG text say what it was.
INSTRUCTION = "instruction"
DIRECTIONS = ("left", "right", "up", "down")
GRID = 3  # Vary (Region) picks cells of a GRID × GRID grid
ZOOM_RANGE = (1.0, 2.0)
# The new area keeps the composition of its start (the background); on SD's noise schedule, converted to
# the model's at render time (outpaint.schedule_strength).
OUTPAINT_STRENGTH = 0.5
REGION_STRENGTH = 1.0
BLEND_STRENGTH = 0.5
MAX_BLEND = 5
CELL_NAMES = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")


def parse_region(text: str | None) -> tuple[int, ...]:
    """"0+4" -> (0, 4); RequestError for anything but distinct cells 0–8."""
    try:
        cells = tuple(sorted({int(part) for part in (text or "").split("+") if part.strip()}))
    except ValueError:
        cells = ()
    if not cells or any(not 0 <= cell < GRID * GRID for cell in cells):
        raise RequestError(f"A region is one or more cells of the {GRID}×{GRID} grid, 0–{GRID * GRID - 1}; got {text!r}.")
    return cells


def region_text(cells: tuple[int, ...] | list[int]) -> str:
    return "+".join(str(cell) for cell in sorted(set(cells)))


def check_edit(request: GenerationRequest) -> None:
    """RequestError when the recorded edit parameters do not make sense (called by validate_request)."""
    mode = request.edit_mode
    if mode == INSTRUCTION:
        return  # the words are the edit: the model's family checks the rest (generation.edit_families)
    if mode not in EDIT_MODES:
        raise RequestError(f"Unknown edit {mode!r}; one of: {', '.join(EDIT_MODES)}.")
    if request.init_image is None and mode is not None:
        return  # the image is still to download (a blend's attachments): checked when it arrives
    if mode == "zoom":
        factor = request.edit_factor
        if not isinstance(factor, (int, float)) or not ZOOM_RANGE[0] <= factor <= ZOOM_RANGE[1]:
            raise RequestError(f"The zoom factor must be a number from {ZOOM_RANGE[0]:g} to {ZOOM_RANGE[1]:g}, got {factor!r}.")
    if mode == "pan" and request.edit_direction not in DIRECTIONS:
        raise RequestError(f"Pan goes {', '.join(DIRECTIONS)}; got {request.edit_direction!r}.")
    if mode == "region":
        parse_region(request.edit_region)


def describe_edit(request: GenerationRequest) -> str | None:
    """A short label of the edit: "zoom out 2×", "pan right", "region centre", "blend" (None: no edit)."""
    mode = request.edit_mode
    if mode == "zoom":
        return f"zoom out {request.edit_factor:g}×"
    if mode == "square":
        return "make square"
    if mode == "pan":
        return f"pan {request.edit_direction}"
    if mode == "region":
        cells = parse_region(request.edit_region)
        return "region " + ", ".join(CELL_NAMES[cell] for cell in cells)
    if mode == "blend":
        return "blend"
    if mode == INSTRUCTION:
        return "instruction edit"
    return None


# ----------------------------------------------------------------------------- geometry (pure)

def _extension(mode: str, factor: float | None, direction: str | None, width: int, height: int,
               ) -> tuple[float, float, float, float]:
    """(x factor, y factor, x anchor, y anchor): how much larger the canvas is, and where the source sits
    (0 = against the left/top edge, 0.5 centred, 1 against the right/bottom edge)."""
    if mode == "zoom":
        f = float(factor or 1.0)
        return f, f, 0.5, 0.5
    if mode == "square":
        side = max(width, height)
        return side / width, side / height, 0.5, 0.5
    if mode == "pan":
        return {
            "right": (1.5, 1.0, 0.0, 0.5), "left": (1.5, 1.0, 1.0, 0.5),
            "down": (1.0, 1.5, 0.5, 0.0), "up": (1.0, 1.5, 0.5, 1.0),
        }[str(direction)]
    return 1.0, 1.0, 0.5, 0.5


def _ceil(value: float, multiple: int) -> int:
    return max(multiple, math.ceil(round(value, 6) / multiple) * multiple)


def _floor(value: float, multiple: int) -> int:
    return max(multiple, int(value) // multiple * multiple)


def canvas_size(mode: str, source_size: tuple[int, int], limits: Limits, *, factor: float | None = None,
                direction: str | None = None, multiple: int = 8) -> tuple[int, int]:
    """The edit's width and height: the extended canvas (multiples of `multiple`: 8, or 16 for SD3 and
    Flux), shrunk to fit the limits."""
    width, height = source_size
    fx, fy, _, _ = _extension(mode, factor, direction, width, height)
    w, h = _ceil(width * fx, multiple), _ceil(height * fy, multiple)
    scale = min(1.0, limits.max_size / w, limits.max_size / h, math.sqrt(limits.max_pixels / (w * h)))
    if scale < 1.0:
        w, h = _floor(w * scale, multiple), _floor(h * scale, multiple)
    low = _ceil(limits.min_size, multiple)
    return max(w, low), max(h, low)


def _cell_box(cell: int, width: int, height: int) -> tuple[int, int, int, int]:
    row, column = divmod(cell, GRID)
    return (width * column // GRID, height * row // GRID, width * (column + 1) // GRID, height * (row + 1) // GRID)


def feather_width(width: int, height: int) -> int:
    return max(2, min(width, height) // 24)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a (2r+1)² square, edges treated as inside the mask (separable min filter)."""
    if radius <= 0:
        return mask
    padded = np.pad(mask, radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0).min(axis=-1)
    return np.lib.stride_tricks.sliding_window_view(windows, 2 * radius + 1, axis=1).min(axis=-1)


def soft_mask(hard: PIL.Image.Image) -> PIL.Image.Image:
    """The feathered mask for laying the result over the canvas: 0 wherever `hard` keeps the pixel, rising
    to 255 over `feather_width` pixels inside the repainted area (so known pixels never change)."""
    import PIL.ImageFilter

    radius = feather_width(*hard.size)
    binary = np.asarray(hard, dtype=np.uint8) > 127
    inner = _erode(binary, radius // 2).astype(np.uint8) * 255
    blurred = PIL.Image.fromarray(inner, "L").filter(PIL.ImageFilter.BoxBlur(radius / 2))
    soft = np.asarray(blurred, dtype=np.float32) * binary
    return PIL.Image.fromarray(np.clip(np.rint(soft), 0, 255).astype(np.uint8), "L")


def edit_canvas(source: PIL.Image.Image, request: GenerationRequest) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """(canvas, mask): the picture to repaint at the request's size, and where (255 = repaint)."""
    assert request.width is not None and request.height is not None and request.edit_mode is not None
    width, height = request.width, request.height
    source = source.convert("RGB")
    if request.edit_mode == "region":
        canvas = source if source.size == (width, height) else source.resize((width, height), PIL.Image.Resampling.LANCZOS)
        mask = np.zeros((height, width), dtype=np.uint8)
        for cell in parse_region(request.edit_region):
            x0, y0, x1, y1 = _cell_box(cell, width, height)
            mask[y0:y1, x0:x1] = 255
        return canvas, PIL.Image.fromarray(mask, "L")
    fx, fy, ax, ay = _extension(request.edit_mode, request.edit_factor, request.edit_direction, *source.size)
    scale = min(1.0, width / (source.width * fx), height / (source.height * fy))
    inner_w = min(width, max(1, round(source.width * scale)))
    inner_h = min(height, max(1, round(source.height * scale)))
    if (inner_w, inner_h) != source.size:
        source = source.resize((inner_w, inner_h), PIL.Image.Resampling.LANCZOS)
    x0, y0 = round((width - inner_w) * ax), round((height - inner_h) * ay)
    pixels = np.asarray(source, dtype=np.uint8)
    padded = np.pad(pixels, ((y0, height - inner_h - y0), (x0, width - inner_w - x0), (0, 0)), mode="edge")
    mask = np.full((height, width), 255, dtype=np.uint8)
    mask[y0:y0 + inner_h, x0:x0 + inner_w] = 0
    return PIL.Image.fromarray(padded, "RGB"), PIL.Image.fromarray(mask, "L")


def blend_strip(images: list[PIL.Image.Image], width: int, height: int) -> PIL.Image.Image:
    """The blend's init image: each source resized to width × height (LANCZOS), side by side."""
    strip = PIL.Image.new("RGB", (width * len(images), height))
    for index, image in enumerate(images):
        strip.paste(image.convert("RGB").resize((width, height), PIL.Image.Resampling.LANCZOS), (index * width, 0))
    return strip


def blend_strip_png(sources: list[bytes], width: int, height: int) -> bytes:
    """`blend_strip` of encoded pictures, as PNG bytes (what a blend records as its init image)."""
    import io

    images = []
    for data in sources:
        with PIL.Image.open(io.BytesIO(data)) as opened:
            images.append(opened.convert("RGB"))
    buffer = io.BytesIO()
    blend_strip(images, width, height).save(buffer, format="PNG")
    return buffer.getvalue()


def blend_sources(strip: PIL.Image.Image, width: int, height: int) -> list[PIL.Image.Image]:
    """The sources of a blend strip (RequestError when the strip does not hold 2–5 of them)."""
    count = strip.width // width
    if strip.height != height or strip.width % width or not 2 <= count <= MAX_BLEND:
        raise RequestError(f"A blend needs 2–{MAX_BLEND} images of {width}×{height} side by side; "
                           f"the stored strip is {strip.width}×{strip.height}.")
    return [strip.crop((index * width, 0, (index + 1) * width, height)) for index in range(count)]


# ----------------------------------------------------------------------------- rendering (torch)

_INPAINT_PIPELINES: dict[int, Any] = {}


def inpaint_pipeline(txt2img: Any) -> Any:
    """The family's inpainting pipeline over the loaded components (no copy of the weights), cached per
    loaded pipeline; RequestError where diffusers has none for this pipeline class."""
    cached = _INPAINT_PIPELINES.get(id(txt2img))
    if cached is not None and cached[0] is txt2img:
        return cached[1]
    import inspect

    from diffusers.pipelines.auto_pipeline import AUTO_INPAINT_PIPELINES_MAPPING, _get_task_class

    try:
        pipeline_class = _get_task_class(AUTO_INPAINT_PIPELINES_MAPPING, type(txt2img).__name__, False)
    except Exception:
        pipeline_class = None
    if pipeline_class is None:
        raise RequestError(f"{type(txt2img).__name__} has no inpainting pipeline, so it cannot zoom, pan or vary a region.")
    parameters = inspect.signature(pipeline_class.__init__).parameters
    components = {name: module for name, module in txt2img.components.items() if name in parameters}
    for name in parameters:
        if name not in components and name in txt2img.config and not isinstance(txt2img.config[name], (list, tuple)):
            components[name] = txt2img.config[name]
    pipe = pipeline_class(**components)
    pipe.set_progress_bar_config(disable=True)
    _INPAINT_PIPELINES.clear()  # one loaded model at a time
    _INPAINT_PIPELINES[id(txt2img)] = (txt2img, pipe)
    return pipe


def render_edit(model: Any, request: GenerationRequest, source: PIL.Image.Image, common: dict[str, Any],
                scheduler: Any) -> tuple[PIL.Image.Image, Any]:
    """One image of an edit request: (image, the pipeline output, for its safety checker's verdict)."""
    assert request.width is not None and request.height is not None
    width, height = request.width, request.height
    if request.edit_mode == "blend":
        start = blend_start(model.txt2img, source, width, height)
        if not request.prompt.strip():
            # No prompt: a model that declares a blend prompt is told what its describer reads in each source
            # (derived from the init image, so the blend still re-renders bit-exact); others mix unconditionally.
            prompt = blend_prompt(model.source, blend_sources(source, width, height))
            if prompt is not None:
                common = {**common, "prompt": prompt}
        pipe = model.img2img
        if pipe is None:
            raise RequestError("This model has no image-to-image pipeline, so it cannot blend.")
        pipe.scheduler = scheduler
        extra = _size_arguments(model.family, pipe, width, height)
        output = pipe(**common, **extra, image=start, strength=request.strength)
        return output.images[0], output
    canvas, mask = edit_canvas(source, request)
    strength = request.strength
    if request.edit_mode != "region":  # outpainting: start from the background, repaint the source's border band
        canvas, mask = outpaint_canvas(canvas, mask)
        strength = schedule_strength(strength, scheduler)  # recorded on SD's schedule: the same noise everywhere
        common = {**common, "num_inference_steps": outpaint_steps(request.num_inference_steps, strength)}
    pipe = inpaint_pipeline(model.txt2img)
    pipe.scheduler = scheduler
    output = pipe(**common, image=canvas, mask_image=mask, strength=strength, width=width, height=height)
    painted = output.images[0].convert("RGB")
    if painted.size != canvas.size:
        painted = painted.resize(canvas.size, PIL.Image.Resampling.LANCZOS)
    if request.edit_mode != "region":
        painted = match_tone(painted, mask, canvas)
    return PIL.Image.composite(painted, canvas, soft_mask(mask)), output


def _size_arguments(family: Any, pipe: Any, width: int, height: int) -> dict[str, int]:
    """Width and height for an image-to-image call whose family takes them (Flux); an untested family's
    pipeline is asked (no family answer exists for it)."""
    import inspect

    if family.img2img_takes_size or (
        not family.tested and {"width", "height"} <= set(inspect.signature(pipe.__call__).parameters)
    ):
        return {"width": width, "height": height}
    return {}


def blend_start(txt2img: Any, strip: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """The blend's starting picture: the sources' VAE latents (their means: no sampling) averaged, decoded."""
    import torch

    vae = txt2img.vae
    processor = txt2img.image_processor
    parameter = next(iter(vae.parameters()))
    with torch.no_grad():
        latents = []
        for image in blend_sources(strip, width, height):
            pixels = processor.preprocess(image, height=height, width=width).to(parameter.device, parameter.dtype)
            latents.append(vae.encode(pixels).latent_dist.mean)
        mixed = torch.stack(latents).mean(dim=0)
        decoded = vae.decode(mixed).sample
    return processor.postprocess(decoded.float().cpu(), output_type="pil")[0]


# ----------------------------------------------------------------------------- requests

def edit_request(request: GenerationRequest, image: bytes, image_seed: int, mode: str, limits: Limits, *,
                 factor: float | None = None, direction: str | None = None, region: str | None = None,
                 prompt: str | None = None, multiple: int = 8) -> GenerationRequest:
    """The child request that edits one image (PNG bytes) of `request`: its canvas size, the recorded edit
    parameters, the image as init image. Zoom, square and pan keep the prompt and the image's seed (the
    same noise, a larger picture); a region gets a new seed (prepare() picks it) and may get a new prompt."""
    import io

    with PIL.Image.open(io.BytesIO(image)) as opened:
        source_size = opened.size
    changes: dict[str, Any] = dict(init_image=image, count=1, variation_seed=None, variation_strength=0.0,
                                   edit_mode=mode, edit_factor=None, edit_direction=None, edit_region=None)
    if mode == "region":
        changes.update(width=_floor(source_size[0], multiple), height=_floor(source_size[1], multiple), seed=None,
                       strength=REGION_STRENGTH, edit_region=region_text(parse_region(region)))
    else:
        if mode == "zoom":
            if factor is None or not ZOOM_RANGE[0] <= factor <= ZOOM_RANGE[1]:
                raise RequestError(f"The zoom factor must be a number from {ZOOM_RANGE[0]:g} to {ZOOM_RANGE[1]:g}.")
            changes["edit_factor"] = float(factor)
        if mode == "pan":
            if direction not in DIRECTIONS:
                raise RequestError(f"Pan goes {', '.join(DIRECTIONS)}.")
            changes["edit_direction"] = direction
        if mode == "square" and source_size[0] == source_size[1]:
            raise RequestError("This image is already square.")
        width, height = canvas_size(mode, source_size, limits, factor=factor, direction=direction, multiple=multiple)
        if (width, height) == source_size and mode == "zoom" and factor == 1.0:
            raise RequestError("A zoom of 1.0 changes nothing; choose a factor above 1.")
        changes.update(width=width, height=height, seed=image_seed, strength=OUTPAINT_STRENGTH)
    if prompt is not None and prompt.strip():
        changes["prompt"] = prompt.strip()
    return request.replace(**changes)


def blend_request(request: GenerationRequest, strength: float = BLEND_STRENGTH) -> GenerationRequest:
    """/blend: img2img from the sources' latent average (the init image, downloaded by the job)."""
    return request.replace(edit_mode="blend", strength=strength, variation_seed=None, variation_strength=0.0)
