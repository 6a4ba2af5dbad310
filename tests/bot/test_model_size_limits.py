"""A model's own size limit caps what members may ask for; the refusal names it."""

from __future__ import annotations

from generation.models import BUILTIN_MODELS


async def test_the_shipped_model_refuses_sizes_beyond_its_trained_ones_naming_the_limit(world):
    assert getattr(BUILTIN_MODELS["tinyshapes"], "max_size", None) == 88  # declared once, on the model entry
    refused = await world.alice.slash(world.channel, "imagine", prompt="a red circle", width=256, height=256)
    assert refused.response.ephemeral
    assert refused.response.content.startswith("tinyshapes draws at most 88 pixels a side"), refused.response.content
    assert "256×256" in refused.response.content
    flagged = await world.alice.slash(world.channel, "imagine", prompt="a red circle --width 96")
    assert flagged.response.ephemeral and "at most 88 pixels a side" in flagged.response.content
    assert await world.store.history(world.alice.id) == []
    # Its widest trained bucket still renders, and an upscale of it (from a picture: twice the limit) too.
    wide = await world.alice.slash(world.channel, "imagine", prompt="a red circle --ar 16:9", steps=2)
    assert wide.response.attachments
    upscaled = await world.alice.click(wide.response, label="Upscale 2×")
    record = await world.store.get_by_message(upscaled.response.id)
    assert (record.width, record.height) == (176, 96)
