"""Style and object references (--sref, --oref): downloaded by the job after its row exists, like init images.

The request carries the URL (an attachment's, or one typed after the flag); the picture is fetched,
decoded in full, stored with its sha256 (`Store.attach_reference`) and put into the request. Until then
a shared-queue worker does not claim the job. A reference that cannot be fetched or read fails the job
with a reason its owner sees privately. A request rebuilt from a record (Reroll, Vary) already holds the
stored picture and downloads nothing.
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import aiohttp
import discord
from PIL import Image

from generation.references import KINDS

if TYPE_CHECKING:
    from generation import GenerationRequest
    from storage import GenerationRecord, Store

MAX_REFERENCE_BYTES = 10 * 1024 * 1024
MAX_REFERENCE_PIXELS = 4096 * 4096
REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")
NAMES = {"sref": "The style reference (--sref)", "oref": "The object reference (--oref)"}


class ReferenceProblem(Exception):
    """A reference could not be fetched or read; `str()` is shown to the job's owner privately."""


def pending_references(request: GenerationRequest) -> list[str]:
    """The kinds ("sref", "oref") the request names by URL whose picture it does not hold yet."""
    return [kind for kind in KINDS if getattr(request, f"{kind}_url") and getattr(request, f"{kind}_image") is None]


async def attach_references(client: discord.Client, store: Store, record: GenerationRecord,
                            request: GenerationRequest) -> GenerationRequest:
    """Download, check and store each pending reference of `record`; the request holding the pictures."""
    for kind in pending_references(request):
        url = getattr(request, f"{kind}_url")
        try:
            data = await client.http.get_from_cdn(url)
        except (discord.HTTPException, aiohttp.ClientError, ValueError) as error:
            status = getattr(error, "status", None)
            http = f" (HTTP {status})" if status else ""
            raise ReferenceProblem(f"{NAMES[kind]} could not be downloaded{http}; check the link or attach it again."
                                   ) from None
        if data is None:
            raise ReferenceProblem(f"{NAMES[kind]} could not be downloaded; check the link or attach it again.")
        await asyncio.to_thread(check_reference, kind, data)
        await store.attach_reference(record.id, kind, data)
        request = request.replace(**{f"{kind}_image": data})
    return request


def check_reference(kind: str, data: bytes) -> None:
    """Decode the whole picture (blocking: run it in a thread), so a damaged file never reaches the renderer."""
    if len(data) > MAX_REFERENCE_BYTES:
        raise ReferenceProblem(f"{NAMES[kind]} is {len(data) / 1048576:.1f} MiB; the limit is "
                               f"{MAX_REFERENCE_BYTES // 1048576} MiB.")
    try:
        with Image.open(io.BytesIO(data), formats=REFERENCE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_REFERENCE_PIXELS:
                raise ReferenceProblem(f"{NAMES[kind]} is {width}×{height} pixels; the limit is "
                                       f"{MAX_REFERENCE_PIXELS} pixels (for example 4096×4096).")
            image.load()
    except ReferenceProblem:
        raise
    except Exception:  # PIL reports damage as OSError, SyntaxError, ValueError, DecompressionBombError…
        raise ReferenceProblem(f"{NAMES[kind]} is not a readable PNG, JPEG or WebP picture.") from None
