"""/history and /show as a member uses them, through SimCord.

Volume comes from the Store directly (25 finished generations take a second that way); at least one
generation in each scenario comes from a real /imagine, so what the runner records is what is listed.
"""

from __future__ import annotations

import re

import discord
import pytest
import simcord
from bot_helpers import attachment_bytes, button_labels, embed_field, image_of, png_of, result_footer, result_title
from PIL import Image

from storage import GenerationKind, GenerationStatus, ImageInput

COLOURS = ["red", "green", "blue", "yellow", "purple"]


async def seed_generation(world, owner, prompt: str, *, seed: int, fail: str | None = None):
    """One generation as the runner would leave it: done with a stored 32×32 PNG, or failed."""
    store = world.store
    record = await store.create_generation(
        owner_id=owner.id, guild_id=world.guild.id, channel_id=world.channel.id, kind=GenerationKind.IMAGINE,
        parent_id=None,
        params={"prompt": prompt, "negative_prompt": "", "width": 32, "height": 32, "num_inference_steps": 4,
                "guidance_scale": 5.0, "seed": seed, "sampler": "DPM++ 2M", "count": 1, "model": "tinyshapes"},
    )
    await store.mark_running(record.id)
    if fail is not None:
        return await store.mark_failed(record.id, fail)
    picture = Image.new("RGB", (32, 32), COLOURS[seed % len(COLOURS)])
    return await store.mark_done(record.id, [ImageInput(index=0, png=png_of(picture), seed=seed)], duration_s=0.2)


def listed_ids(message) -> list[int]:
    """The generation ids on the page, top to bottom, as the member reads them."""
    return [int(found) for found in re.findall(r"\*\*#(\d+)\*\*", message.embeds[0].description)]


def footer(message) -> str:
    return message.embeds[0].footer.text


def button(message, label: str) -> dict:
    for row in message.components:
        for component in row.get("components", []):
            if component.get("label") == label:
                return component
    raise AssertionError(f"no button {label!r} in {button_labels(message)}")


def moderator(world):
    mods = world.guild.create_role("mods", permissions=discord.Permissions(manage_messages=True))
    return world.guild.add_member(world.env.create_user("carol"), roles=[mods])


async def test_history_pages_newest_first_through_26_generations(world):
    seeded = [await seed_generation(world, world.alice, f"{COLOURS[i % 5]} shape number {i}", seed=100 + i)
              for i in range(25)]
    made = await world.alice.slash(world.channel, "imagine", prompt="a red circle on blue", seed=7, steps=4)
    newest = await world.store.get_by_message(made.response.id)
    assert newest is not None and newest.status is GenerationStatus.DONE

    result = await world.alice.slash(world.channel, "history")
    page = result.response
    assert page.ephemeral
    everything = [newest.id] + [record.id for record in reversed(seeded)]
    assert listed_ids(page) == everything[:10]
    assert footer(page).startswith("Page 1/3 · 26 generation(s)")
    first_entry = page.embeds[0].description.split("\n")[:2]
    assert "seed `7`" in first_entry[0] and "✅ done" in first_entry[0] and "<t:" in first_entry[0]
    assert first_entry[1] == "> a red circle on blue"
    assert button(page, "◀ Newer").get("disabled") and not button(page, "Older ▶").get("disabled")

    await world.alice.click(page, label="Older ▶")
    assert listed_ids(page) == everything[10:20]
    assert footer(page).startswith("Page 2/3")
    await world.alice.click(page, label="Older ▶")
    assert listed_ids(page) == everything[20:]
    assert footer(page).startswith("Page 3/3")
    assert button(page, "Older ▶").get("disabled"), "the last page must not offer an older one"
    with pytest.raises(simcord.SetupError):
        await world.alice.click(page, label="Older ▶")

    await world.alice.click(page, label="◀ Newer")
    assert listed_ids(page) == everything[10:20] and footer(page).startswith("Page 2/3")


async def test_history_filters_by_prompt_and_shows_why_a_generation_failed(world):
    await seed_generation(world, world.alice, "a cat in a hat", seed=1)
    broken = await seed_generation(world, world.alice, "a CAT on a mat", seed=2,
                                   fail="The GPU ran out of memory; try a smaller size or fewer images.")
    await seed_generation(world, world.alice, "a dog", seed=3)
    await seed_generation(world, world.bob, "bob's cat", seed=4)

    result = await world.alice.slash(world.channel, "history", prompt="cat")
    page = result.response
    assert page.ephemeral
    text = page.embeds[0].description
    assert "a cat in a hat" in text and "a CAT on a mat" in text
    assert "a dog" not in text and "bob's cat" not in text
    assert f"**#{broken.id}**" in text
    assert "❌ failed: The GPU ran out of memory; try a smaller size or fewer images." in text
    assert footer(page).startswith("Page 1/1 · 2 generation(s) matching “cat”")
    assert button(page, "Older ▶").get("disabled") and button(page, "◀ Newer").get("disabled")

    nothing = await world.alice.slash(world.channel, "history", prompt="giraffe")
    assert nothing.response.ephemeral
    assert nothing.response.content == "You have no generations whose prompt contains “giraffe”."


async def test_a_new_member_is_told_how_to_start(world):
    result = await world.bob.slash(world.channel, "history")
    assert result.response.ephemeral
    assert result.response.content == "You have no generations yet. Try /imagine."


async def test_only_moderators_may_list_another_members_history(world):
    await seed_generation(world, world.alice, "alice's secret garden", seed=5)

    refused = await world.bob.slash(world.channel, "history", user=world.alice)
    assert refused.response.ephemeral
    assert "Manage Messages" in refused.response.content
    assert "secret garden" not in refused.response.content

    carol = moderator(world)
    allowed = await carol.slash(world.channel, "history", user=world.alice)
    page = allowed.response
    assert page.ephemeral
    assert page.embeds[0].title == "Generations of alice"
    assert "alice's secret garden" in page.embeds[0].description


async def test_pager_buttons_are_disabled_when_it_times_out(world):
    for i in range(12):
        await seed_generation(world, world.alice, f"shape {i}", seed=i)
    result = await world.alice.slash(world.channel, "history")
    page = result.response
    assert not button(page, "Older ▶").get("disabled")

    await world.env.advance_time(601)
    assert button(page, "Older ▶").get("disabled") and button(page, "◀ Newer").get("disabled")
    assert listed_ids(page), "the list itself stays readable"


async def test_show_reposts_a_generation_whose_buttons_work(world):
    made = await world.alice.slash(world.channel, "imagine", prompt="a blue square", seed=11, steps=4)
    original = await world.store.get_by_message(made.response.id)
    original_png = await attachment_bytes(made.response)

    shown = await world.alice.slash(world.channel, "show", id=original.id)
    message = shown.response
    assert message is not None and not message.ephemeral, "/show posts in the channel for everyone"
    assert message.id != made.response.id
    assert await attachment_bytes(message) == original_png
    assert result_title(message) == "a blue square"
    assert embed_field(message, "Seed") == "11"
    assert result_footer(message).startswith(f"#{original.id} ")
    assert "Reroll" in button_labels(message)

    rerolled = await world.alice.click(message, label="Reroll")
    result = rerolled.response
    assert result is not None and result.attachments, "Reroll on the re-posted message renders a new image"
    child = await world.store.get_by_message(result.id)
    assert child.kind is GenerationKind.REROLL and child.parent_id == original.id
    assert child.status is GenerationStatus.DONE and child.seed != 11
    assert image_of(await attachment_bytes(result)).size == image_of(original_png).size

    listing = await world.alice.slash(world.channel, "history")
    assert listed_ids(listing.response) == [child.id, original.id]
    assert f"**#{child.id}** · reroll of #{original.id} · " in listing.response.embeds[0].description


async def test_show_is_private_to_the_owner_and_moderators(world):
    record = await seed_generation(world, world.alice, "alice's portrait", seed=20)  # red

    refused = await world.bob.slash(world.channel, "show", id=record.id)
    assert refused.response.ephemeral
    assert refused.response.content == (
        f"Generation #{record.id} belongs to another member. Only its owner or a moderator "
        "(Manage Messages) can re-post it. /history lists yours.")

    carol = moderator(world)
    shown = await carol.slash(world.channel, "show", id=record.id)
    assert not shown.response.ephemeral and result_title(shown.response) == "alice's portrait"
    assert image_of(await attachment_bytes(shown.response)).getpixel((0, 0)) == (255, 0, 0)

    missing = await world.alice.slash(world.channel, "show", id=record.id + 1000)
    assert missing.response.ephemeral
    assert missing.response.content == f"There is no generation #{record.id + 1000}. /history lists the ids of yours."

    await world.store.delete_generation(record.id)
    gone = await world.alice.slash(world.channel, "show", id=record.id)
    assert gone.response.ephemeral and gone.response.content == (
        f"Generation #{record.id} was deleted, with its images, so it can't be shown again.")


async def test_show_explains_a_failed_or_unfinished_generation(world):
    failed = await seed_generation(world, world.alice, "too big", seed=1,
                                   fail="The GPU ran out of memory; try a smaller size or fewer images.")
    result = await world.alice.slash(world.channel, "show", id=failed.id)
    assert result.response.ephemeral
    assert result.response.content == (
        f"Generation #{failed.id} failed, so there is no image to show: "
        "The GPU ran out of memory; try a smaller size or fewer images.")

    queued = await world.store.create_generation(
        owner_id=world.alice.id, guild_id=world.guild.id, channel_id=world.channel.id,
        kind=GenerationKind.IMAGINE, parent_id=None, params={"prompt": "later"})
    waiting = await world.alice.slash(world.channel, "show", id=queued.id)
    assert waiting.response.ephemeral
    assert waiting.response.content.startswith(f"Generation #{queued.id} is waiting to be rendered.")

    await world.store.mark_cancelled(queued.id)
    cancelled = await world.alice.slash(world.channel, "show", id=queued.id)
    assert cancelled.response.content == (
        f"Generation #{queued.id} was cancelled before it finished, so there is no image to show.")
