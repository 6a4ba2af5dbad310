"""LoRAs from a folder (LORA_DIR): names, A1111 short hashes, and whether one fits a model.

A LoRA is a `.safetensors` file in LORA_DIR; its name is the file name without the suffix, and a
prompt asks for it with `<lora:name:0.8>`. Whether it fits the model is decided before queueing from
the file's header alone (tensor names and shapes; no weights read, no torch): a UNet LoRA needs a UNet
family (SD 1.x/2.x, SDXL) with the same cross-attention width, a transformer LoRA the same family
(Flux's has single blocks, SD3's none) and the same hidden width, and text-encoder-2 keys need SDXL.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from pathlib import Path
from typing import Any

from .request import RequestError


def read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header: {tensor name: {"dtype", "shape", "data_offsets"}, "__metadata__": ...}."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        if length > 100_000_000:
            raise ValueError("header too large")
        return json.loads(file.read(length))


def addnet_hash(path: Path) -> str:
    """A1111's LoRA hash: sha256 of a safetensors file's tensor data (the header skipped)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        file.seek(8 + length)
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_name(name: str) -> str:
    """A peft adapter name for a LoRA file name (peft names may not contain dots)."""
    return re.sub(r"\W", "_", name)


class LoraLibrary:
    """The LoRAs in one folder; an empty library when no folder is configured."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder).expanduser() if folder else None
        self._hashes: dict[tuple[str, float, int], str] = {}
        self._headers: dict[tuple[str, float, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("*.safetensors"))

    def path(self, name: str) -> Path:
        if self.folder is None:
            raise RequestError(f"The prompt asks for the LoRA {name!r}, but no LoRAs are installed (LORA_DIR is not set).")
        path = self.folder / f"{name}.safetensors"
        if "/" in name or "\\" in name or not path.is_file():
            available = ", ".join(self.names()) or "none"
            raise RequestError(f"Unknown LoRA {name!r}. Available LoRAs: {available}.")
        return path

    def _key(self, path: Path) -> tuple[str, float, int]:
        stat = path.stat()
        return str(path), stat.st_mtime, stat.st_size

    def short_hash(self, name: str) -> str:
        """The 12-character hash A1111 writes in `Lora hashes`."""
        path = self.path(name)
        key = self._key(path)
        with self._lock:
            if key not in self._hashes:
                self._hashes[key] = addnet_hash(path)[:12]
            return self._hashes[key]

    def header(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        key = self._key(path)
        with self._lock:
            if key not in self._headers:
                try:
                    self._headers[key] = {k: v for k, v in read_header(path).items() if k != "__metadata__"}
                except (OSError, ValueError, struct.error) as error:
                    raise RequestError(f"The LoRA {name!r} is not a readable .safetensors file ({error}).") from None
            return self._headers[key]

    def check_fits(self, name: str, info: Any) -> None:
        """RequestError naming the mismatch when LoRA `name` cannot apply to the model described by `info`."""
        reason = lora_mismatch(self.header(name), info)
        if reason:
            raise RequestError(f"The LoRA {name!r} does not fit {info.label} ({info.family.title}): {reason}.")


def _is_down(key: str) -> bool:
    """The LoRA's A ("down") matrix, in diffusers/peft, old diffusers and kohya key styles."""
    return any(marker in key for marker in ("lora_A", "lora_down", "lora.down"))


_UNET_BLOCK = re.compile(r"(down_blocks|up_blocks)[._](\d+)|mid_block")


def _unet_block_mismatch(header: dict[str, Any], channels: list[int] | None) -> str | None:
    """attn1's input is its block's channel width: down_blocks.i -> channels[i], up_blocks.i -> reversed."""
    if not channels:
        return None
    for key, entry in header.items():
        if not (("attn1.to_q" in key or "attn1_to_q" in key) and _is_down(key)):
            continue
        match = _UNET_BLOCK.search(key)
        shape = entry.get("shape") or []
        if match is None or len(shape) < 2:
            continue
        if match.group(1) is None:
            expected = channels[-1]
        else:
            index = int(match.group(2))
            levels = channels if match.group(1) == "down_blocks" else channels[::-1]
            if index >= len(levels):
                return f"it has a block ({match.group(0)}) the model does not have"
            expected = levels[index]
        if int(shape[1]) != expected:
            return f"its {match.group(0)} layers are {shape[1]} wide, the model's {expected}"
    return None


def _lora_in_features(header: dict[str, Any], patterns: tuple[str, ...]) -> int | None:
    for key, entry in header.items():
        if any(pattern in key for pattern in patterns) and _is_down(key):
            shape = entry.get("shape") or []
            if len(shape) >= 2:
                return int(shape[1])
    return None


_UNET_PREFIXES = (
    "unet.", "lora_unet_down", "lora_unet_up", "lora_unet_mid", "lora_unet_input", "lora_unet_output",
    "lora_unet_middle", "model.diffusion_model.input_blocks", "model.diffusion_model.output_blocks",
)


def lora_mismatch(header: dict[str, Any], info: Any) -> str | None:
    """Why a LoRA (by its tensor names and shapes) cannot apply to a model, or None if it fits."""
    keys = list(header)
    family = info.family
    unet_like = any(key.startswith(_UNET_PREFIXES) for key in keys)
    flux_like = any("single_transformer_blocks" in key or "single_blocks" in key for key in keys)
    transformer_like = not unet_like and (
        flux_like
        or any(key.startswith("transformer.") for key in keys)
        or any(marker in key for key in keys for marker in ("double_blocks", "joint_blocks", "context_block"))
    )
    if transformer_like and family.denoiser != "transformer":
        return f"it is made for a transformer model ({'Flux' if flux_like else 'SD3'}), this is a UNet model"
    if not transformer_like and family.denoiser == "transformer":
        return "it is made for a UNet model (SD 1.x/2.x or SDXL), this is a transformer model"
    if family.tested and flux_like != (family.key == "flux"):
        return "it is made for Flux" if flux_like else "it is made for SD3"
    if any(key.startswith(("lora_te2_", "text_encoder_2.")) for key in keys) and family.key == "sd":
        return "it has weights for a second text encoder (SDXL)"
    if family.denoiser == "unet":
        width = _lora_in_features(header, ("attn2.to_k", "attn2_to_k"))
        expected = info.extra.get("cross_attention_dim")
    else:
        width = _lora_in_features(header, ("attn.to_q", "attn_to_q", "attn.qkv", "img_attn_qkv"))
        expected = info.extra.get("inner_dim")
    if width is not None and expected is not None and width != expected:
        return f"its layers are {width} wide, the model's {expected}"
    if family.denoiser == "unet":
        return _unet_block_mismatch(header, info.extra.get("block_out_channels"))
    return None
