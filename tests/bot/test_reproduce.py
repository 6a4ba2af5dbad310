"""Info's Reproduce line pasted back into /imagine prompt: renders the same picture."""

from __future__ import annotations

from bot_helpers import attachment_bytes, image_of

from generation.queue.records import request_from_record


def _reproduce_line(info) -> str:
    field = next(field for field in info.embeds[0].fields if field.name.startswith("Reproduce"))
    assert field.value.startswith("```\n") and field.value.endswith("\n```"), field.value
    return field.value[4:-4]


async def test_the_reproduce_line_pasted_into_prompt_renders_the_same_picture(world):
    first = (await world.alice.slash(world.channel, "imagine", prompt="a green triangle", seed=77, steps=3,
                                     negative_prompt="blur", guidance=6.5, sampler="Euler a", width=48, height=32,
                                     count=2)).response
    line = _reproduce_line((await world.alice.click(first, label="Info")).response)
    assert "\n" not in line and ":" not in line.replace("--ar", "")  # one line, no `option:` parts

    again = await world.bob.slash(world.channel, "imagine", prompt=line)
    assert again.response is not None and again.response.attachments, again
    original = await world.store.get_by_message(first.id)
    copy = await world.store.get_by_message(again.response.id)
    assert request_from_record(copy) == request_from_record(original)
    assert [image.seed for image in copy.images] == [image.seed for image in original.images]
    assert (image_of(await attachment_bytes(again.response)).tobytes()
            == image_of(await attachment_bytes(first)).tobytes())
