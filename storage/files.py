"""Image files under the data directory: id-derived paths, atomic writes, A1111 metadata, sha256 checks.

All functions here are blocking; the Store runs them in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image as PILImage

IMAGES_DIR = "images"


class CorruptImage(Exception):
    """An image file is missing or its bytes no longer match the recorded sha256."""


def image_path(generation_id: int, index: int) -> str:
    """Relative path of one grid image; derived from ids only, never from user text."""
    return f"{IMAGES_DIR}/{generation_id // 1000}/{generation_id}-{index}.png"


def init_image_path(generation_id: int, data: bytes) -> str:
    return f"{IMAGES_DIR}/{generation_id // 1000}/{generation_id}-init{_sniff_extension(data)}"


def reference_path(generation_id: int, kind: str, data: bytes) -> str:
    """A style ("sref") or object ("oref") reference picture of a generation."""
    return f"{IMAGES_DIR}/{generation_id // 1000}/{generation_id}-{kind}{_sniff_extension(data)}"


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


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header (nothing else is decoded)."""
    with PILImage.open(io.BytesIO(data), formats=["PNG"]) as image:
        return image.size


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
