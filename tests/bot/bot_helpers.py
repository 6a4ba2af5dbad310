"""Helpers for the bot tests: read what a user would see on a message (images, embed fields, buttons)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image


async def attachment_bytes(message: Any, index: int = 0) -> bytes:
    attachments = message.attachments
    assert len(attachments) > index, f"message has {len(attachments)} attachment(s): {message!r}"
    return await attachments[index].read()


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def embed_field(message: Any, name: str) -> str:
    assert message.embeds, f"message has no embed: {message!r}"
    for field in message.embeds[0].fields:
        if field.name == name:
            return field.value
    raise AssertionError(f"embed has no field {name!r}: {[f.name for f in message.embeds[0].fields]}")


def button_labels(message: Any) -> list[str]:
    labels = []
    for row in message.components:
        for component in row.get("components", []):
            if component.get("label"):
                labels.append(component["label"])
    return labels


def custom_ids(message: Any) -> list[str]:
    return [component["custom_id"] for row in message.components for component in row.get("components", [])
            if component.get("custom_id")]


def png_of(image: Image.Image) -> bytes:
    """PNG bytes of a picture, as the runner hands finished images to the store."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
