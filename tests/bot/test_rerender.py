"""A stored image renders again from its record, bit-exact: the record keeps its batch place."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from generation.queue.records import place_of, request_for_image
from generation.request import BatchPlace


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.bot(batch_images=4)
async def test_a_re_render_from_the_record_equals_the_stored_png(world):
    # A held queue: alice's grid and bob's single image are both queued before the worker looks, so they
    # share one pipeline call (3 images).
    world.factory.hold_queue()
    alice = await world.alice.slash(world.channel, "imagine", prompt="a yellow triangle", seed=5, count=2, steps=4)
    bob = await world.bob.slash(world.channel, "imagine", prompt="a red circle", seed=9, steps=4)
    world.factory.release_queue()
    await world.env.settle()
    messages = [alice.response, bob.response]
    records = [await world.store.get_by_message(message.id) for message in messages]
    places = [place_of(image) for record in records for image in record.images]
    assert places == [BatchPlace(3, 0), BatchPlace(3, 1), BatchPlace(3, 2)]

    service = world.bot.queue.scheduler  # type: ignore[attr-defined]  # the in-process queue's
    for record in records:
        for image in record.images:
            request = service.prepare(request_for_image(record, image))
            job = service.submit(request, owner=str(record.owner_id), place=place_of(image))
            again = (await job.result()).images[0]
            stored = await world.store.read_image(image)
            rendered = io.BytesIO()
            again.image.save(rendered, format="PNG")
            assert np.array_equal(pixels(rendered.getvalue()), pixels(stored))
