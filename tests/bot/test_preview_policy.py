"""Live previews under the content policy (issue 20.3): the classifier sees only the final image, so where
the policy would hold or spoiler a flagged result (block, spoiler), outside age-restricted channels, the
preview is shown heavily blurred, with a note; allow and age-restricted channels show it sharp."""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
from PIL import Image
from test_content_policy import RedFlagger, age_restrict, set_policy

import bot.status
from bot import presentation
from generation.request import Progress

PROMPT = "a red square on a green background"


def sharpness(image: Image.Image) -> float:
    """The steepest step between neighbouring pixels: a sharp edge is one big step, a blurred one many small."""
    pixels = np.asarray(image.convert("L"), dtype=float)
    return float(max(np.abs(np.diff(pixels, axis=0)).max(), np.abs(np.diff(pixels, axis=1)).max()))


def test_a_blurred_preview_keeps_its_size_and_loses_its_detail() -> None:
    preview = Image.new("RGB", (64, 64), (0, 160, 0))
    preview.paste((220, 0, 0), (16, 16, 48, 48))
    sharp, blurred = (Image.open(presentation.preview_file(Progress(1, 4, preview), blurred).fp)
                      for blurred in (False, True))
    assert blurred.size == sharp.size == (64, 64)
    assert sharpness(blurred) < 0.25 * sharpness(sharp)


async def previews_of(world: Any, monkeypatch: Any, channel: Any, seed: int) -> tuple[list[Image.Image], list[str]]:
    """Render one job with a running status clock; the preview images and rendering lines its status showed."""
    shown: list[Image.Image] = []
    preview_file = presentation.preview_file

    def recording_preview_file(progress: Progress, blurred: bool = False) -> Any:
        file = preview_file(progress, blurred)
        if file is not None:
            shown.append(Image.open(io.BytesIO(file.fp.read())).copy())
            file.fp.seek(0)
        return file

    monkeypatch.setattr(bot.status.presentation, "preview_file", recording_preview_file)
    ticks = itertools.count()
    world.bot.runner.status_clock = lambda: 0.4 * next(ticks)
    before = len(world.env.http_requests)
    await world.alice.slash(channel, "imagine", prompt=PROMPT, seed=seed, steps=12)
    monkeypatch.undo()
    lines = [entry.json.get("content") or "" for entry in world.env.http_requests[before:]
             if entry.method == "PATCH" and isinstance(entry.json, dict)]
    return shown, [line for line in lines if "Rendering step" in line]


async def test_previews_are_blurred_where_the_policy_screens_results(world, monkeypatch) -> None:
    world.bot.services.finisher.classifier = RedFlagger()
    await set_policy(world, "allow")
    sharp, sharp_lines = await previews_of(world, monkeypatch, world.channel, seed=4)
    assert sharp and not any("blurred" in line for line in sharp_lines)

    for policy in ("spoiler", "block"):
        await set_policy(world, policy)
        blurred, lines = await previews_of(world, monkeypatch, world.channel, seed=4)
        assert blurred and lines and all("preview blurred by this server's content rules" in line for line in lines)
        # The same render's previews (same seed): the blurred ones have lost their edges.
        assert max(sharpness(image) for image in blurred) < 0.5 * min(sharpness(image) for image in sharp)

    restricted = world.guild.create_text_channel("after-dark")
    age_restrict(world, restricted)
    shown, lines = await previews_of(world, monkeypatch, restricted, seed=4)
    assert shown and not any("blurred" in line for line in lines)
    assert min(sharpness(image) for image in shown) > 0.5 * min(sharpness(image) for image in sharp)


async def test_the_shipped_model_without_a_classifier_shows_its_previews(world, monkeypatch) -> None:
    # Nothing can flag its results (coloured shapes, no safety checker, no classifier): nothing to hide.
    await set_policy(world, "block")
    shown, lines = await previews_of(world, monkeypatch, world.channel, seed=4)
    assert shown and not any("blurred" in line for line in lines)
