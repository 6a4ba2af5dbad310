"""Pictures a job downloads after its row exists, in the session's transaction: the init image given by URL
and the reference pictures (--sref, --oref; migration 0010)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from . import files
from .models import REFERENCE_IMAGE_FIELDS, Generation
from .repository import _require

KINDS = ("sref", "oref")


async def attach_init_image(session: AsyncSession, generation_id: int, path: str, sha256: str,
                            size: tuple[int, int] | None = None) -> Generation:
    """The pending init image was downloaded to `path`: the job can render now (at `size` if given)."""
    row = await _require(session, generation_id)
    if size is not None:
        row.width, row.height = size
    row.init_image_path = path
    row.init_image_sha256 = sha256
    row.init_image_url = None
    await session.flush()
    return row


async def attach_reference(session: AsyncSession, generation_id: int, kind: str, path: str, sha256: str) -> Generation:
    """A reference picture (from its URL) was downloaded and written to `path`: a worker may claim the job."""
    if kind not in KINDS:
        raise ValueError(f"unknown reference kind {kind!r}")
    row = await _require(session, generation_id)
    setattr(row, f"{kind}_path", path)
    setattr(row, f"{kind}_sha256", sha256)
    await session.flush()
    return row


def pictures_to_store(generation_id: int, init_image: bytes | None,
                      params: Mapping[str, Any]) -> list[tuple[str, str, bytes]]:
    """(column prefix, path, bytes) of the pictures a new generation brings: its init image and the
    references given as pictures (sref_image -> sref_path, sref_sha256)."""
    pictures = [("init_image", files.init_image_path(generation_id, init_image), init_image)] if init_image else []
    for field in REFERENCE_IMAGE_FIELDS:
        data = params.get(field)
        if data is not None:
            kind = field.removesuffix("_image")
            pictures.append((kind, files.reference_path(generation_id, kind, data), data))
    return pictures


def stored_references(row: Generation) -> dict[str, tuple[str, str]]:
    """{kind: (path, sha256)} of the references whose pictures are stored."""
    stored = {kind: (getattr(row, f"{kind}_path"), getattr(row, f"{kind}_sha256")) for kind in KINDS}
    return {kind: (path, digest) for kind, (path, digest) in stored.items() if path is not None and digest is not None}
