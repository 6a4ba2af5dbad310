"""Image files under the data directory: id-derived paths, atomic writes, A1111 metadata, sha256 checks.

All functions here are blocking; the Store runs them in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

IMAGES_DIR = "images"


class CorruptImage(Exception):
    """An image file is missing or its bytes no longer match the recorded sha256."""


def image_path(generation_id: int, index: int) -> str:
    """Relative path of one grid image; derived from ids only, never from user text."""
    return f"{IMAGES_DIR}/{generation_id // 1000}/{generation_id}-{index}.png"


def init_image_path(generation_id: int, data: bytes) -> str:
    return f"{IMAGES_DIR}/{generation_id // 1000}/{generation_id}-init{_sniff_extension(data)}"


def _sniff_extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bin"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _format_number(value: float) -> str:
    # A1111 prints 7.0 as "7.0" and 0.05 as "0.05"; repr keeps exactly what was stored.
    return repr(float(value))


def a1111_parameters(params: Mapping[str, Any], *, seed: int, width: int, height: int,
                     variation_seed: int | None = None, variation_strength: float = 0.0,
                     img2img: bool = False) -> str:
    """The `parameters` text A1111 writes, which A1111, ComfyUI and civitai read back.

    Format: prompt, optional "Negative prompt: ..." line, then one "Key: value, ..." line.
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
    if img2img and params.get("strength") is not None:
        fields.append(("Denoising strength", _format_number(params["strength"])))
    if params.get("tiling"):
        fields.append(("Tiling", "True"))
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


def write_atomic(data_dir: Path, relative: str, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target.

    A crash leaves either the old file or the new one, never a torn PNG.
    """
    target = data_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checked(data_dir: Path, relative: str, expected_sha256: str) -> bytes:
    path = data_dir / relative
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CorruptImage(f"image file is missing: {relative}") from exc
    if sha256_hex(data) != expected_sha256:
        raise CorruptImage(f"image file does not match its recorded sha256: {relative}")
    return data


def remove_files(data_dir: Path, relatives: list[str]) -> None:
    for relative in relatives:
        (data_dir / relative).unlink(missing_ok=True)
