"""What members read when something is off: unreadable uploads, wrong file types, who asked for a result."""

from __future__ import annotations

import io
from types import SimpleNamespace

from bot_helpers import attachment_bytes, button_labels, embed_field, image_of, message_text
from PIL import Image

from bot.cogs.edit_commands import sources_aspect_ratio
from storage import GenerationKind


async def test_describe_with_an_unreadable_picture_explains_privately(world):
    answered = await world.alice.slash(world.channel, "describe", image=("broken.png", b"not a picture at all"))
    private = [message for message in [answered.response, *answered.followups]
               if message is not None and message.ephemeral]
    assert private, answered
    assert "could not be read" in private[-1].content and "PNG, JPEG or WebP" in private[-1].content


async def test_describe_with_a_text_file_names_the_image_option(world):
    answered = await world.alice.slash(world.channel, "describe", image=("notes.txt", b"hello"))
    assert answered.response.ephemeral
    assert answered.response.content.startswith("image must be a PNG, JPEG or WebP picture")
    assert "init_image" not in answered.response.content


async def _imagine(world, member=None, **options):
    options = {"prompt": "a red circle on a blue background", "steps": 3, "seed": 5, **options}
    result = await (member or world.alice).slash(world.channel, "imagine", **options)
    assert result.response is not None and result.response.attachments, result
    return result.response


async def test_a_result_made_by_a_button_press_says_who_asked(world):
    message = await _imagine(world)
    assert " by <@" not in message_text(message)  # a command's own result: its reply already shows who asked
    rerolled = (await world.bob.click(message, label="Reroll")).response
    assert f"Rerolled by <@{world.bob.id}>" in message_text(rerolled).splitlines()
    upscaled = (await world.alice.click(message, label="Upscale 2×")).response
    assert f"Upscaled 2× by <@{world.alice.id}>" in message_text(upscaled).splitlines()


async def test_a_pick_shows_no_steps_or_time_of_its_own(world):
    grid = await _imagine(world, count=2)
    picked = (await world.bob.click(grid, label="U2")).response
    text = message_text(picked)
    assert "Steps:" not in text and "Time:" not in text, text
    assert embed_field(picked, "Seed") and embed_field(picked, "Size") == "64×64"
    assert "Steps:" in message_text(grid) and "Time:" in message_text(grid)  # the render itself has them


async def test_results_made_from_an_init_image_can_be_varied(world):
    message = await _imagine(world)
    upscaled = (await world.alice.click(message, label="Upscale 2×")).response
    zoomed = (await world.alice.click(message, label="Zoom Out 2×")).response
    for result in (upscaled, zoomed):
        assert {"Vary (Subtle)", "Vary (Strong)"} <= set(button_labels(result)), button_labels(result)
    varied = (await world.bob.click(upscaled, label="Vary (Strong)")).response
    record = await world.store.get_by_message(varied.id)
    source = await world.store.get_by_message(upscaled.id)
    assert record.kind is GenerationKind.VARIATION and record.parent_id == source.id and record.has_init_image
    assert len(record.images) == 4 and (record.width, record.height) == (128, 128)
    assert record.edit_mode is None and record.owner_id == world.bob.id
    started_from = image_of(await world.store.read_init_image(record.id)).convert("RGB")
    assert started_from.tobytes() == image_of(await world.store.read_image(source.images[0])).convert("RGB").tobytes()
    # An img2img grid gets V1–V4 as well.
    grid = await _imagine(world, count=2, init_image=("start.png", await attachment_bytes(message)))
    assert {"V1", "V2"} <= set(button_labels(grid))


async def test_blend_keeps_square_sources_square_whatever_the_members_default_shape(world):
    await world.alice.slash(world.channel, "settings", width=88, height=48)
    square = Image.new("RGB", (64, 64), (200, 40, 40))
    buffer = io.BytesIO()
    square.save(buffer, format="PNG")
    blended = await world.alice.slash(world.channel, "blend", image1=("a.png", buffer.getvalue()),
                                      image2=("b.png", buffer.getvalue()), prompt="--steps 2")
    record = await world.store.get_by_message(blended.response.id)
    assert (record.width, record.height) == (64, 64)
    assert {(image.width, image.height) for image in record.images} == {(64, 64)}


def test_the_blend_shape_follows_the_sources_as_discord_reports_them():
    def source(width, height):
        return SimpleNamespace(width=width, height=height)

    assert sources_aspect_ratio([source(64, 64), source(512, 512)]) == "1:1"
    assert sources_aspect_ratio([source(1920, 1080), source(1280, 720)]) == "16:9"
    assert sources_aspect_ratio([source(None, None), source(None, None)]) == "1:1"
    assert sources_aspect_ratio([source(1000, 10), source(1000, 10)]) == "4:1"  # within --ar's range
