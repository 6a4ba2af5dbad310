"""The A1111 `parameters` PNG text, written the same way by the CLI and (through storage) the bot.

This is the one writer (and reader, `parse_a1111_parameters`): the bot builds each stored PNG with
`rendered_png` and hands storage the bytes; the CLI writes the same.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo


def _format_number(value: float) -> str:
    # A1111 prints 7.0 as "7.0" and 0.05 as "0.05"; repr keeps exactly what was stored.
    return repr(float(value))


def a1111_parameters(params: Mapping[str, Any], *, seed: int, width: int, height: int,
                     variation_seed: int | None = None, variation_strength: float = 0.0,
                     img2img: bool = False, lora_hashes: Mapping[str, str] | None = None) -> str:
    """The `parameters` text A1111 writes, which A1111, ComfyUI and civitai read back.

    Format: prompt, optional "Negative prompt: ..." line, then one "Key: value, ..." line.
    `params` holds GenerationRequest fields (prompt, negative_prompt, num_inference_steps, sampler,
    guidance_scale, model, strength). `lora_hashes`: {name: 12-hex short hash} of the prompt's LoRAs
    (generation.loras.LoraLibrary.short_hash, as A1111 computes it).
    """
    lines = [params.get("prompt") or ""]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    fields = [
        ("Steps", params.get("num_inference_steps")),
        ("Sampler", params.get("sampler")),
        ("CFG scale", _format_number(params["guidance_scale"])
         if params.get("guidance_scale") is not None else None),
        ("Seed", seed),
        ("Size", f"{width}x{height}"),
        ("Model", params.get("model")),
    ]
    if variation_seed is not None and variation_strength:
        fields.append(("Variation seed", variation_seed))
        fields.append(("Variation seed strength", _format_number(variation_strength)))
    if img2img and params.get("strength") is not None and params.get("edit_mode") != "instruction":
        fields.append(("Denoising strength", _format_number(params["strength"])))
    if params.get("edit_mode"):  # generation.editing: what re-derives the canvas and mask
        fields.append(("Edit", params["edit_mode"]))
        for key, name in (("edit_factor", "Edit factor"), ("edit_direction", "Edit direction"),
                          ("edit_region", "Edit region")):
            if params.get(key) is not None:
                fields.append((name, _format_number(params[key]) if key == "edit_factor" else params[key]))
    if params.get("tiling"):
        fields.append(("Tiling", "True"))
    from .references import reference_text_fields

    fields += reference_text_fields(dict(params))  # Style reference: <sha256>, Style weight: 100, …
    if lora_hashes:  # A1111: Lora hashes: "name: 0123456789ab, other: ..."
        fields.append(("Lora hashes", ", ".join(f"{name}: {digest}" for name, digest in lora_hashes.items())))
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields if value is not None))
    return "\n".join(lines)


def _quote(value: Any) -> str:
    # A1111 quotes values containing separators (e.g. a model name with a comma) as JSON strings.
    text = str(value)
    if "," in text or ":" in text or "\n" in text or text.startswith('"'):
        return json.dumps(text)
    return text


_FIELD = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_a1111_parameters(text: str) -> dict[str, str]:
    """Parse A1111 `parameters` text into {"Prompt", "Negative prompt", "Steps", ...} strings."""
    *head, last = text.strip().split("\n")
    result: dict[str, str] = {}
    found = _FIELD.findall(last)
    if len(found) < 3:  # no settings line: the whole text is prompt
        head.append(last)
        found = []
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in head:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result["Prompt"] = "\n".join(prompt_lines)
    result["Negative prompt"] = "\n".join(negative_lines)
    for key, value in found:
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        result[key.strip()] = value
    return result


def encode_png(image: PILImage.Image, parameters: str) -> bytes:
    """PNG bytes with the A1111 `parameters` tEXt chunk."""
    info = PngInfo()
    info.add_text("parameters", parameters)
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "I", "I;16"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def rendered_png(request: Any, rendered: Any, lora_hashes: Mapping[str, str] | None = None) -> bytes:
    """PNG bytes of one RenderedImage of `request`, with its A1111 parameters (what the bot stores)."""
    params = {key: value for key, value in asdict(request).items() if key != "init_image"}
    width, height = rendered.image.size
    text = a1111_parameters(
        params, seed=rendered.seed, width=width, height=height, variation_seed=rendered.variation_seed,
        variation_strength=rendered.variation_strength, img2img=request.init_image is not None,
        lora_hashes=lora_hashes,
    )
    return encode_png(rendered.image, text)
