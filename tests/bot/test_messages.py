"""What members read when something is off: unreadable uploads, wrong file types, who asked for a result."""

from __future__ import annotations


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
