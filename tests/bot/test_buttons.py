"""The buttons under a result, clicked the way members click them."""

from __future__ import annotations

import numpy as np
import pytest
from bot_helpers import attachment_bytes, button_labels, embed_field, image_of, result_title

from storage import GenerationKind


async def _imagine(world, member=None, **options):
    options = {"prompt": "a red circle", "steps": 4, **options}
    result = await (member or world.alice).slash(world.channel, "imagine", **options)
    assert result.response is not None and result.response.attachments, result
    return result.response


async def test_reroll_renders_the_same_request_with_a_new_seed_as_a_child(world):
    message = await _imagine(world, seed=42, negative_prompt="blue")
    rerolled = await world.alice.click(message, label="Reroll")

    new_message = rerolled.response
    assert new_message is not None and not new_message.ephemeral and new_message.id != message.id
    assert embed_field(new_message, "Seed") != "42"
    assert result_title(new_message) == "a red circle"
    assert embed_field(new_message, "Negative prompt") == "blue"
    child = await world.store.get_by_message(new_message.id)
    parent = await world.store.get_by_message(message.id)
    assert child.kind is GenerationKind.REROLL and child.parent_id == parent.id
    assert child.num_inference_steps == 4 and child.seed != 42


async def test_v1_makes_variations_of_the_first_grid_image(world):
    grid = await _imagine(world, seed=100, count=4)
    varied = await world.alice.click(grid, label="V1")

    message = varied.response
    child = await world.store.get_by_message(message.id)
    parent = await world.store.get_by_message(grid.id)
    assert child.kind is GenerationKind.VARIATION and child.parent_id == parent.id
    assert child.seed == parent.images[0].seed == 100
    assert child.variation_seed is not None and child.variation_strength == 0.5
    assert len(child.images) == 4
    # Four variations of one image: one seed, and four variation seeds that tell them apart.
    assert embed_field(message, "Seed") == "100"
    variation_seeds = ", ".join(str(image.variation_seed) for image in child.images)
    assert len({image.variation_seed for image in child.images}) == 4
    assert embed_field(message, "Variation") == f"seeds {variation_seeds}, strength 0.5"


async def test_u1_posts_the_first_grid_image_alone_with_its_own_buttons(world):
    grid = await _imagine(world, seed=200, count=4)
    parent = await world.store.get_by_message(grid.id)
    upscaled = await world.alice.click(grid, label="U1")

    message = upscaled.response
    single = image_of(await attachment_bytes(message))
    assert single.size == (parent.images[0].width, parent.images[0].height)
    stored_first = image_of(await world.store.read_image(parent.images[0]))
    assert np.array_equal(np.asarray(single), np.asarray(stored_first))
    assert embed_field(message, "Seed") == "200"
    assert "Vary (Subtle)" in button_labels(message) and "U1" not in button_labels(message)
    child = await world.store.get_by_message(message.id)
    assert child.kind is GenerationKind.PICK and child.parent_id == parent.id and child.count == 1


async def test_edit_modal_rerenders_with_the_new_prompt(world):
    message = await _imagine(world, seed=9)
    shown = await world.alice.click(message, label="Edit")
    assert shown.modal is not None

    submitted = await world.alice.submit_modal(
        shown, {"prompt": "a blue square", "negative_prompt": "red", "keep_seed": True})
    edited = submitted.response
    assert result_title(edited) == "a blue square"
    assert embed_field(edited, "Seed") == "9"
    assert embed_field(edited, "Negative prompt") == "red"
    assert "a blue square" in image_of(await attachment_bytes(edited)).info["parameters"]
    child = await world.store.get_by_message(edited.id)
    assert child.kind is GenerationKind.EDIT and child.parent_id == (await world.store.get_by_message(message.id)).id


async def test_info_lists_every_parameter_and_a_line_that_reproduces_it(world):
    message = await _imagine(world, prompt="a green triangle", seed=77, negative_prompt="blur", guidance=6.5,
                             sampler="Euler a", width=48, height=32)
    info = await world.alice.click(message, label="Info")

    assert info.response.ephemeral
    embed = info.response.embeds[0]
    text = embed.description
    for expected in ("a green triangle", "blur", "48×32", "Steps:** 4", "6.5", "77", "Euler a", "tinyshapes",
                     "Images per prompt:** 1"):
        assert expected in text, (expected, text)
    # Nothing that does not apply: no variation or init-image rows for a plain render.
    assert "Variation" not in text and "Init image" not in text
    assert embed.fields[0].name == "Reproduce: paste into /imagine prompt:"
    line = embed.fields[0].value.strip("`\n")
    assert line == ("a green triangle --width 48 --height 32 --steps 4 --cfg 6.5 --seed 77 --sampler Euler a "
                    "--model tinyshapes --no blur")


async def test_anyone_may_build_on_a_result_and_the_new_generation_is_theirs(world):
    message = await _imagine(world, seed=5)
    rerolled = await world.bob.click(message, label="Reroll")

    assert rerolled.response.attachments and not rerolled.response.ephemeral
    parent = await world.store.get_by_message(message.id)
    child = await world.store.get_by_message(rerolled.response.id)
    assert child.owner_id == world.bob.id and child.parent_id == parent.id
    assert [record.id for record in await world.store.history(world.bob.id)] == [child.id]
    # Edit and Delete stay with the owner (and moderators).
    for label in ("Edit", "Delete"):
        refused = await world.bob.click(message, label=label)
        assert refused.response.ephemeral and "Not yours" in refused.response.content


@pytest.mark.bot(share_results=False)
async def test_the_operator_can_keep_results_to_their_owners(world):
    message = await _imagine(world, seed=5)
    refused = await world.bob.click(message, label="Reroll")
    assert refused.response.ephemeral and "Not yours" in refused.response.content
    record = await world.store.get_by_message(message.id)
    assert (await world.store.lineage(record.id)).children == []


async def test_delete_removes_the_message_and_the_images(world):
    message = await _imagine(world, seed=5)
    record = await world.store.get_by_message(message.id)
    image_path = world.bot.settings.data_dir / record.images[0].path
    assert image_path.exists()

    deleted = await world.alice.click(message, label="Delete")

    assert deleted.response.ephemeral and f"#{record.id}" in deleted.response.content
    assert world.channel.last_message is None or world.channel.last_message.id != message.id
    assert not image_path.exists()
    assert await world.store.get(record.id) is None  # gone from history (the row stays for lineage)


async def test_buttons_still_work_after_a_restart(world):
    message = await _imagine(world, seed=31)
    await world.restart()

    rerolled = await world.alice.click(message, label="Reroll")
    new_message = rerolled.response
    assert new_message.attachments and embed_field(new_message, "Seed") != "31"
    refused = await world.bob.click(message, label="Edit")
    assert refused.response.ephemeral and "Not yours" in refused.response.content


@pytest.mark.bot(batch_images=1)  # positions of single-image calls
async def test_cancel_stops_a_queued_job_and_says_so(world):
    world.factory.hold_queue()
    first = await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    second = await world.bob.slash(world.channel, "imagine", prompt="a blue circle", steps=4)
    assert "Queued — position 1" in first.response.content
    assert "Queued — position 2" in second.response.content

    refused = await world.bob.click(first.response, label="Cancel")
    assert refused.response.ephemeral and "Not yours" in refused.response.content
    cancelled = await world.alice.click(first.response, label="Cancel")
    assert cancelled.response.ephemeral and "Cancelled job #1" in cancelled.response.content
    assert "Queued — position 1" in second.response.content  # the line follows the queue as it moves

    world.factory.release_queue()
    await world.env.settle()
    assert "✖ Cancelled." in first.response.content and not first.response.attachments
    assert second.response.attachments  # the queue went on with the next job
    assert (await world.store.get(1)).status.value == "cancelled"


async def test_a_member_with_manage_messages_may_delete_someone_elses_result(world):
    import discord

    moderators = world.guild.create_role("moderators", permissions=discord.Permissions(manage_messages=True))
    carol = world.guild.add_member(world.env.create_user("carol"), roles=[moderators])
    message = await _imagine(world, seed=4)
    record = await world.store.get_by_message(message.id)

    refused = await world.bob.click(message, label="Delete")
    assert refused.response.ephemeral and "Not yours" in refused.response.content
    deleted = await carol.click(message, label="Delete")
    assert deleted.response.ephemeral and await world.store.get(record.id) is None


async def test_vary_subtle_and_upscale_2x_on_a_single_image(world):
    message = await _imagine(world, seed=60)
    subtle = (await world.alice.click(message, label="Vary (Subtle)")).response
    child = await world.store.get_by_message(subtle.id)
    assert child.kind is GenerationKind.VARIATION and child.seed == 60 and child.variation_strength == 0.15
    assert len(child.images) == 4 and "V1" in button_labels(subtle)  # a grid, like V1–V4 give

    bigger = (await world.alice.click(message, label="Upscale 2×")).response
    parent = await world.store.get_by_message(message.id)
    upscaled = await world.store.get_by_message(bigger.id)
    assert upscaled.kind is GenerationKind.UPSCALE and upscaled.parent_id == parent.id and upscaled.has_init_image
    assert image_of(await attachment_bytes(bigger)).size == (parent.images[0].width * 2, parent.images[0].height * 2)
    # An upscale varies by an img2img pass from itself (tests/bot/test_messages.py).
    assert {"Vary (Subtle)", "Vary (Strong)", "Upscale 2×"} <= set(button_labels(bigger))


async def test_edit_modal_takes_inline_flags_like_imagine(world):
    message = await _imagine(world, seed=9)
    shown = await world.alice.click(message, label="Edit")
    edited = (await world.alice.submit_modal(shown, {"prompt": "a blue square --steps 5 --seed 123"})).response
    assert result_title(edited) == "a blue square"
    assert embed_field(edited, "Steps") == "5" and embed_field(edited, "Seed") == "123"

    shown = await world.alice.click(message, label="Edit")
    refused = (await world.alice.submit_modal(shown, {"prompt": "a blue square --sparkle"})).response
    assert refused.ephemeral and "Unknown flag --sparkle" in refused.content


async def test_info_of_a_variation_lists_its_variation_seed_and_strength(world):
    message = await _imagine(world, seed=60)
    varied = (await world.alice.click(message, label="Vary (Strong)")).response
    child = await world.store.get_by_message(varied.id)

    info = (await world.alice.click(varied, label="Info")).response
    assert info.ephemeral
    text = info.embeds[0].description
    seeds = ", ".join(str(child.variation_seed + index) for index in range(4))
    assert f"**Variation seeds:** {seeds} (strength 0.5)" in text
    assert f"Variation from #{(await world.store.get_by_message(message.id)).id}" in text


async def test_a_store_outage_during_a_click_gets_an_apology_with_the_job_id(world, monkeypatch):
    message = await _imagine(world, seed=5)
    record = await world.store.get_by_message(message.id)

    async def store_down(generation_id):
        raise ConnectionError("database is locked")

    monkeypatch.setattr(world.store, "get", store_down)
    clicked = await world.alice.click(message, label="Reroll")
    assert clicked.response.ephemeral
    assert f"something went wrong on our side with job #{record.id}" in clicked.response.content


async def test_delete_on_a_reposted_result_removes_the_original_message_too(world):
    message = await _imagine(world, seed=5)
    record = await world.store.get_by_message(message.id)
    reposted = (await world.alice.slash(world.channel, "show", id=record.id)).response

    deleted = await world.alice.click(reposted, label="Delete")

    assert deleted.response.ephemeral and f"#{record.id}" in deleted.response.content
    remaining = [posted.id for posted in world.channel.history()]
    assert message.id not in remaining and reposted.id not in remaining
    assert await world.store.get(record.id) is None
