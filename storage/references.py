"""Reference pictures (--sref, --oref; migration 0010) of a generation, in the session's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from .models import Generation
from .repository import GenerationNotFound, get_generation

KINDS = ("sref", "oref")


async def attach_reference(session: AsyncSession, generation_id: int, kind: str, path: str, sha256: str) -> Generation:
    """A reference picture (from its URL) was downloaded and written to `path`: a worker may claim the job."""
    if kind not in KINDS:
        raise ValueError(f"unknown reference kind {kind!r}")
    row = await get_generation(session, generation_id, for_update=True)
    if row is None:
        raise GenerationNotFound(generation_id)
    setattr(row, f"{kind}_path", path)
    setattr(row, f"{kind}_sha256", sha256)
    await session.flush()
    return row


def stored_references(row: Generation) -> dict[str, tuple[str, str]]:
    """{kind: (path, sha256)} of the references whose pictures are stored."""
    stored = {kind: (getattr(row, f"{kind}_path"), getattr(row, f"{kind}_sha256")) for kind in KINDS}
    return {kind: (path, digest) for kind, (path, digest) in stored.items() if path is not None and digest is not None}
