"""Shared helpers for the storage tests (a module with a unique name, importable from tests)."""

from __future__ import annotations

import io

from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from storage import ImageInput, Store

OWNER = 111_222_333_444_555_666  # a real-sized Discord snowflake
GUILD = 900_000_000_000_000_001
CHANNEL = 900_000_000_000_000_002


def request_params(**overrides: Any) -> dict[str, Any]:
    """Every GenerationRequest field except init_image, as the bot passes them."""
    params: dict[str, Any] = {
        "prompt": "a red circle on a blue square",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 48,
        "num_inference_steps": 20,
        "guidance_scale": 5.0,
        "seed": 1234,
        "sampler": "DPM++ 2M",
        "count": 2,
        "strength": 0.75,
        "variation_seed": None,
        "variation_strength": 0.0,
        "model": "tinyshapes",
    }
    params.update(overrides)
    return params


def png_of(image: Image.Image, text: str = "") -> bytes:
    """PNG bytes as the bot hands them to the store (with a `parameters` text chunk when given)."""
    info = PngInfo()
    if text:
        info.add_text("parameters", text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def rendered(params: dict[str, Any]) -> list[ImageInput]:
    """What the renderer hands back: image i uses seed + i, or for variations the parent's seed
    and variation_seed + i."""
    images = []
    for index in range(params["count"]):
        colour = (40 * index % 256, 100, 200)
        variation = params["variation_seed"]
        images.append(
            ImageInput(
                index=index,
                png=png_of(Image.new("RGB", (params["width"], params["height"]), colour)),
                seed=params["seed"] + (0 if params["variation_strength"] else index),
                variation_seed=None if variation is None else variation + index,
                variation_strength=params["variation_strength"],
            )
        )
    return images


async def queue(store: Store, owner_id: int = OWNER, *, kind: str = "imagine",
                parent_id: int | None = None, **overrides: Any):
    return await store.create_generation(
        owner_id=owner_id, guild_id=GUILD, channel_id=CHANNEL, kind=kind,
        parent_id=parent_id, params=request_params(**overrides),
    )


async def finish(store: Store, generation_id: int, duration_s: float = 1.25):
    record = await store.get(generation_id)
    assert record is not None
    await store.mark_running(generation_id)
    return await store.mark_done(generation_id, rendered(request_params(**record.request_params)), duration_s)


async def claim_next(store: Store, worker: str = "w", lease_s: float = 600.0, **options: Any) -> Any:
    """The one job `worker` claims next (for any model it is asked about, by default the shipped one), or None."""
    options = {"models": ["tinyshapes"], "max_size": 1024, "loaded_model": None, **options}
    claimed, _ = await store.claim(worker, lease_s=lease_s, **options)
    return claimed[0] if claimed else None
