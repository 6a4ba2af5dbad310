"""Helpers for the bot tests: read what a user would see on a message (images, embed fields, buttons),
compare a stored image with a render of it again, run a crash harness's process, and load tests/generation's
helper modules."""

from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

# The SimCord test bots' BATCH_IMAGES: fixed, since `auto` times batch sizes on each new bot (seconds of
# renders per test, and a limit that depends on the machine's load). A test about one image per call says
# @pytest.mark.bot(batch_images=1).
BOT_BATCH_IMAGES = 4


async def attachment_bytes(message: Any, index: int = 0) -> bytes:
    attachments = message.attachments
    assert len(attachments) > index, f"message has {len(attachments)} attachment(s): {message!r}"
    return await attachments[index].read()


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _walk(components: Any) -> Any:
    """Every component of a message, nested ones too (Components V2 containers hold action rows)."""
    for component in components or []:
        if not isinstance(component, dict):  # discord.py's component objects (a channel message's)
            component = component.to_dict()
        yield component
        yield from _walk(component.get("components"))


def _texts(message: Any) -> list[str]:
    return [component["content"] for component in _walk(message.components) if component.get("type") == 10]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def result_title(message: Any) -> str:
    """A result's heading (the prompt) in either layout: the embed's title, or the gallery's `### ` line."""
    if message.embeds:
        return message.embeds[0].title
    for text in _texts(message):
        if text.startswith("### "):
            return _unescape(text.splitlines()[0][4:])
    raise AssertionError(f"message has no result heading: {message!r}")


def result_footer(message: Any) -> str:
    """`#12 · Imagined · tinyshapes …` in either layout."""
    if message.embeds:
        return message.embeds[0].footer.text
    for text in _texts(message):
        if text.startswith("-# "):
            return text[3:]
    raise AssertionError(f"message has no result footer: {message!r}")


def gallery_items(message: Any) -> list[dict[str, Any]]:
    """The media gallery items of a Components V2 result (empty for the classic embed)."""
    return [item for component in _walk(message.components) if component.get("type") == 12
            for item in component.get("items", [])]


def embed_field(message: Any, name: str) -> str:
    """A result's field (Seed, Size, Negative prompt…) in either layout: embed fields, or `**Name:** value`."""
    if message.embeds:
        for field in message.embeds[0].fields:
            if field.name == name:
                return field.value
        raise AssertionError(f"embed has no field {name!r}: {[f.name for f in message.embeds[0].fields]}")
    found = {}
    for text in _texts(message):
        for piece in re.split(r" · |\n", text):
            match = re.match(r"\*\*(.+?):\*\* (.*)$", piece)
            if match:
                found[match.group(1)] = match.group(2)
    assert name in found, f"message has no field {name!r}: {list(found)} ({message!r})"
    return found[name]


def button_labels(message: Any) -> list[str]:
    return [component["label"] for component in _walk(message.components)
            if component.get("type") == 2 and component.get("label")]


def custom_ids(message: Any) -> list[str]:
    return [component["custom_id"] for component in _walk(message.components)
            if component.get("type") == 2 and component.get("custom_id")]


def is_spoiler(message: Any) -> bool:
    """Whether a result's picture is shown blurred: its gallery item is a spoiler, or (classic layout) the
    embed carries no copy of the image and the file is a `SPOILER_` one."""
    items = gallery_items(message)
    if items:
        return all(item.get("spoiler") for item in items)
    return bool(message.embeds) and not message.embeds[0].image and all(
        attachment.filename.startswith("SPOILER_") for attachment in message.attachments)


def png_of(image: Image.Image) -> bytes:
    """PNG bytes of a picture, as the runner hands finished images to the store."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def message_text(message: Any) -> str:
    """All the text a member reads on a message: its content and, in the gallery layout, its text displays."""
    return "\n".join([message.content or "", *_texts(message)])



async def differing_from_a_render_again(store: Any, records: list[Any]) -> list[str]:
    """The prompts of those records whose stored images differ (any pixel) from their requests rendered again
    alone in the place of the call each image was recorded in (a fresh CPU renderer, float32, one thread, as
    the crash tests' processes render)."""
    from generation import Renderer
    from generation.queue.records import place_of, request_for_image

    renderer = Renderer("tinyshapes", device="cpu", dtype="float32", cpu_threads=1)
    differing = []
    for record in records:
        for image in record.images:
            stored = Image.open(io.BytesIO(await store.read_image(image))).convert("RGB")
            [again] = renderer.render_batch([request_for_image(record, image)], place=place_of(image))
            if not np.array_equal(np.asarray(stored), np.asarray(again.images[0].image.convert("RGB"))):
                differing.append(record.prompt)
    return differing


GENERATION_TESTS = Path(__file__).resolve().parents[1] / "generation"


def load_generation_helper(name: str) -> ModuleType:
    """A helper module of tests/generation (it imports that folder's other helpers)."""
    if str(GENERATION_TESTS) not in sys.path:
        sys.path.append(str(GENERATION_TESTS))
    spec = importlib.util.spec_from_file_location(name, GENERATION_TESTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_crash_harness(script: str, data_dir: Path, phase: str, render_log: Path) -> subprocess.CompletedProcess[str]:
    """One process of a crash harness of this folder (crash_harness.py, turn_crash_harness.py), run to its end."""
    return subprocess.run([sys.executable, str(Path(__file__).with_name(script)), str(data_dir), phase,
                           str(render_log)], capture_output=True, text=True, timeout=600)
