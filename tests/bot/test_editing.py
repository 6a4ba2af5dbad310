"""Zoom Out, Make Square, Pan, Vary (Region), /blend and /describe, clicked and typed the way members do."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from bot_helpers import attachment_bytes, button_labels, custom_ids, image_of, result_title
from PIL import Image, ImageDraw

from generation.queue.records import request_from_record
from training.tinyshapes import measure
from storage import GenerationKind

PROMPT = "a red circle on a blue background"


async def _imagine(world, member=None, **options):
    options = {"prompt": PROMPT, "steps": 4, **options}
    result = await (member or world.alice).slash(world.channel, "imagine", **options)
    assert result.response is not None and result.response.attachments, result
    return result.response


async def _pixels(world, record, index=0) -> np.ndarray:
    return np.asarray(image_of(await world.store.read_image(record.images[index])).convert("RGB")).astype(int)


async def _rendered_again(world, record) -> np.ndarray:
    """The record's request rendered again from scratch (what /show or a re-render would give)."""
    from generation import Renderer

    request = request_from_record(record, await world.store.read_init_image(record.id))
    renderer = Renderer("tinyshapes", device="cpu", dtype="float32", cpu_threads=1)
    image = await asyncio.to_thread(lambda: renderer.render(request).images[0].image)
    return np.asarray(image.convert("RGB")).astype(int)


async def test_zoom_out_2x_doubles_the_canvas_and_keeps_the_centre(world):
    message = await _imagine(world, seed=7)
    parent = await world.store.get_by_message(message.id)
    assert {"Zoom Out 2×", "Zoom Out 1.5×", "Custom Zoom", "Vary (Region)"} <= set(button_labels(message))

    zoomed = (await world.alice.click(message, label="Zoom Out 2×")).response
    child = await world.store.get_by_message(zoomed.id)
    shown = image_of(await attachment_bytes(zoomed))
    assert shown.size == (128, 128)
    before, after = await _pixels(world, parent), await _pixels(world, child)
    # The source, untouched but for its 2-px border band, repainted with the new area (generation/outpaint.py).
    assert np.abs(after[34:94, 34:94] - before[2:-2, 2:-2]).max() <= 2
    assert child.kind is GenerationKind.ZOOM and child.parent_id == parent.id
    assert (child.edit_mode, child.edit_factor, child.seed) == ("zoom", 2.0, parent.seed)
    assert "Edit: zoom, Edit factor: 2.0" in shown.info["parameters"]
    assert np.array_equal(await _rendered_again(world, child), after)  # bit-exact from the record
    info = (await world.alice.click(zoomed, label="Info")).response
    assert info.ephemeral and "**Edit:** zoom out 2×" in info.embeds[0].description


async def test_pan_right_extends_the_width_by_half_and_keeps_the_left(world):
    message = await _imagine(world, seed=8)
    parent = await world.store.get_by_message(message.id)
    panned = (await world.alice.click(message, custom_id=f"gen:pan:{parent.id}:0:right")).response
    child = await world.store.get_by_message(panned.id)
    after = await _pixels(world, child)
    assert after.shape[:2] == (64, 96)
    assert np.abs(after[:, :62] - (await _pixels(world, parent))[:, :62]).max() <= 2
    assert child.kind is GenerationKind.PAN and child.edit_direction == "right"


async def test_pan_past_the_models_limit_shrinks_the_canvas_to_fit(world):
    # The shipped model draws at most 176 px a side from a picture; ➡️ on a 128×128 zoom asks 192×128.
    message = await _imagine(world, seed=8)
    zoomed = (await world.alice.click(message, label="Zoom Out 2×")).response
    parent = await world.store.get_by_message(zoomed.id)
    assert (parent.width, parent.height) == (128, 128)
    panned = (await world.alice.click(zoomed, custom_id=f"gen:pan:{parent.id}:0:right")).response
    assert not panned.ephemeral and panned.attachments, panned.content
    child = await world.store.get_by_message(panned.id)
    assert child.kind is GenerationKind.PAN and (child.width, child.height) == (176, 112)
    # The zoomed picture, scaled to 112×112, against the left side: its interior kept.
    shrunk = image_of(await world.store.read_image(parent.images[0])).convert("RGB").resize((112, 112), Image.LANCZOS)
    assert np.abs((await _pixels(world, child))[4:108, 4:108] - np.asarray(shrunk).astype(int)[4:108, 4:108]).max() <= 2


async def test_vary_region_on_the_centre_changes_the_centre_and_keeps_the_corners(world):
    message = await _imagine(world, seed=9)
    parent = await world.store.get_by_message(message.id)
    shown = await world.alice.click(message, label="Vary (Region)")
    assert shown.modal is not None
    submitted = await world.alice.submit_modal(shown, {"cells": ["4"], "prompt": "a green circle on a blue background"})
    child = await world.store.get_by_message(submitted.response.id)
    before, after = await _pixels(world, parent), await _pixels(world, child)
    assert after.shape == before.shape
    corners = [(slice(0, 21), slice(0, 21)), (slice(0, 21), slice(43, 64)),
               (slice(43, 64), slice(0, 21)), (slice(43, 64), slice(43, 64))]
    for rows, columns in corners:
        assert np.array_equal(after[rows, columns], before[rows, columns])
    assert np.abs(after[24:40, 24:40] - before[24:40, 24:40]).mean() > 20
    assert child.kind is GenerationKind.REGION and child.edit_region == "4" and child.seed != parent.seed
    assert child.prompt == "a green circle on a blue background"


async def test_make_square_and_custom_zoom(world):
    message = await _imagine(world, seed=10, aspect_ratio="16:9")
    parent = await world.store.get_by_message(message.id)
    squared = (await world.alice.click(message, label="Make Square")).response
    child = await world.store.get_by_message(squared.id)
    assert child.kind is GenerationKind.SQUARE and child.width == child.height == max(parent.width, parent.height)
    assert "Make Square" not in button_labels(squared)  # square now

    shown = await world.alice.click(squared, label="Custom Zoom")
    zoomed = (await world.alice.submit_modal(shown, {"prompt": PROMPT, "factor": "1.25"})).response
    grandchild = await world.store.get_by_message(zoomed.id)
    assert grandchild.edit_factor == 1.25 and grandchild.width == grandchild.height == 112  # 88 × 1.25, up to 8s
    refused = await world.alice.submit_modal(await world.alice.click(squared, label="Custom Zoom"),
                                             {"prompt": PROMPT, "factor": "3"})
    assert refused.response.ephemeral and "from 1 to 2" in refused.response.content


async def test_edit_buttons_survive_a_restart_and_follow_share_results(world):
    message = await _imagine(world, seed=11)
    parent = await world.store.get_by_message(message.id)
    await world.restart()
    zoomed = (await world.bob.click(message, label="Zoom Out 1.5×")).response
    child = await world.store.get_by_message(zoomed.id)
    assert child.owner_id == world.bob.id and child.width == 96 and child.parent_id == parent.id
    for custom_id in custom_ids(message):
        if custom_id.startswith(("gen:zoom:", "gen:czoom:", "gen:pan:", "gen:region:")):
            assert world.bot.settings.share_results  # open to everyone, as Reroll is


@pytest.mark.bot(share_results=False)
async def test_edit_buttons_refuse_other_members_when_results_are_not_shared(world):
    message = await _imagine(world, seed=12)
    await world.restart()
    for custom_id in custom_ids(message):
        if custom_id.startswith(("gen:zoom:", "gen:czoom:", "gen:pan:", "gen:region:")):
            refused = await world.bob.click(message, custom_id=custom_id)
            assert refused.response.ephemeral and "Not yours" in refused.response.content, custom_id


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _drawn(shape: str, colour: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (64, 64), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "circle" else draw.rectangle)((15, 15, 49, 49), fill=colour)
    return _png(image)


async def test_blend_of_a_red_circle_and_a_blue_square_shows_both_colours(world):
    # No prompt but a seed (inline flags work as in /imagine): the model is told what its describer reads.
    result = await world.alice.slash(world.channel, "blend", image1=("circle.png", _drawn("circle", (220, 30, 30))),
                                     image2=("square.png", _drawn("square", (30, 70, 220))), prompt="--seed 11")
    record = await world.store.get_by_message(result.response.id)
    assert record.kind is GenerationKind.BLEND and len(record.images) == 4 and record.edit_mode == "blend"
    assert record.prompt == "" and record.seed == 11 and result_title(result.response) == "Blend"
    for image in record.images:
        picture = image_of(await world.store.read_image(image))
        assert measure.colour_share(picture, "red") > 0.05 and measure.colour_share(picture, "blue") > 0.05
    strip = image_of(await world.store.read_init_image(record.id))
    assert strip.size == (128, 64)  # both sources, side by side: the blend re-renders from its record
    assert np.array_equal(await _rendered_again(world, record), await _pixels(world, record))


async def test_blend_refuses_a_text_file(world):
    result = await world.alice.slash(world.channel, "blend", image1=("a.png", b"x"), image2=("notes.txt", b"hello"))
    assert result.response.ephemeral and result.response.content.startswith("image2 must be a PNG, JPEG or WebP")


async def test_describe_proposes_the_prompt_of_a_rendered_picture_and_its_buttons_imagine_it(world):
    message = await _imagine(world, seed=7)
    described = await world.alice.slash(world.channel, "describe", image=("shape.png", await attachment_bytes(message)))
    answer = described.response
    assert PROMPT in answer.content
    assert button_labels(answer) == ["1", "2", "3", "4"]
    await world.restart()
    imagined = (await world.bob.click(answer, label="1")).response
    record = await world.store.get_by_message(imagined.id)
    assert record.prompt == PROMPT and record.owner_id == world.bob.id and record.kind is GenerationKind.IMAGINE


@pytest.mark.bot(share_results=False)
async def test_describe_buttons_are_the_describers_when_results_are_not_shared(world):
    message = await _imagine(world, seed=7)
    answer = (await world.alice.slash(world.channel, "describe", image=("s.png", await attachment_bytes(message)))).response
    refused = await world.bob.click(answer, label="2")
    assert refused.response.ephemeral and "Not yours" in refused.response.content
