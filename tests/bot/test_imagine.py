"""/imagine as a member uses it, on the shipped tinyshapes model, through SimCord."""

from __future__ import annotations

import itertools


import discord

import numpy as np
import pytest
import simcord
from bot_helpers import attachment_bytes, button_labels, embed_field, image_of, result_title

from generation import GenerationRequest
from storage import GenerationKind, GenerationStatus


def _callback_types(env: simcord.Env) -> list[int]:
    return [entry.json.get("type") for entry in env.http_requests
            if entry.path.endswith("/callback") and isinstance(entry.json, dict)]


async def test_imagine_defers_then_posts_a_png_with_its_parameters(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a red circle on a blue background",
                                     seed=42, steps=4)

    # Deferred first (the "thinking" message), then the thinking message became the result.
    assert _callback_types(world.env)[0] == 5
    message = result.response
    assert message is not None and not message.ephemeral
    png = await attachment_bytes(message)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    parameters = image_of(png).info["parameters"]
    assert parameters.startswith("a red circle on a blue background")
    assert "Seed: 42" in parameters and "Steps: 4" in parameters
    assert embed_field(message, "Seed") == "42"
    assert embed_field(message, "Steps") == "4"
    assert embed_field(message, "Time").endswith(" s")
    assert result_title(message) == "a red circle on a blue background"
    assert {"Reroll", "Edit", "Info", "Delete", "Vary (Subtle)", "Vary (Strong)", "Upscale 2×"} <= set(
        button_labels(message))

    record = await world.store.get_by_message(message.id)
    assert record is not None and record.status is GenerationStatus.DONE
    assert record.kind is GenerationKind.IMAGINE and record.seed == 42 and record.owner_id == world.alice.id
    native = world.bot.queue.native_size("tinyshapes")
    assert embed_field(message, "Size") == f"{native}×{native}" == f"{record.width}×{record.height}"


def _status_edits(env: simcord.Env) -> list[dict]:
    return [entry.json for entry in env.http_requests
            if entry.method == "PATCH" and entry.path.endswith("/messages/@original") and isinstance(entry.json, dict)]


async def test_the_status_message_shows_the_queue_then_the_steps(world):
    await world.alice.slash(world.channel, "imagine", prompt="a green square", seed=1, steps=6)

    contents = [edit.get("content") or "" for edit in _status_edits(world.env)]
    # Position 1 behind nothing, or already picked up by the idle worker: either way with an ETA.
    assert ("⏳ Queued — position 1, ETA " in contents[0]) or ("⏳ Starting now, ETA " in contents[0]), contents[0]
    assert "🎨 Rendering step 1/6" in contents[1]
    # SimCord's loop clock stands still during a render, so the 1-per-second limit holds back the rest.
    assert not any("Rendering step 2/6" in text for text in contents)


async def test_on_a_running_clock_step_edits_bring_previews_and_respect_the_interval(world):
    # SimCord's loop clock stands still during a render; a counting clock stands in for a running one:
    # every look at it is 0.4 s later, so with a 1 s interval about every third step is shown.
    ticks = itertools.count()
    world.bot.runner.status_clock = lambda: 0.4 * next(ticks)
    await world.alice.slash(world.channel, "imagine", prompt="a green square", seed=1, steps=12)

    steps = [edit for edit in _status_edits(world.env) if "Rendering step" in (edit.get("content") or "")]
    assert 2 <= len(steps) < 12, [edit.get("content") for edit in steps]
    assert any(edit.get("attachments") for edit in steps), "no preview image was shown"


async def test_four_images_come_as_one_2x2_grid_with_u_and_v_buttons(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a yellow triangle", seed=5, count=4,
                                     steps=4)
    message = result.response
    grid = image_of(await attachment_bytes(message))
    record = await world.store.get_by_message(message.id)
    single = record.images[0]
    assert grid.size == (single.width * 2, single.height * 2)
    assert embed_field(message, "Seeds") == "5, 6, 7, 8"
    assert {"U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "Reroll"} <= set(button_labels(message))


async def test_the_same_seed_gives_identical_pixels(world):
    first = await world.alice.slash(world.channel, "imagine", prompt="a red square", seed=7, steps=4)
    second = await world.bob.slash(world.channel, "imagine", prompt="a red square", seed=7, steps=4)
    a = np.asarray(image_of(await attachment_bytes(first.response)))
    b = np.asarray(image_of(await attachment_bytes(second.response)))
    assert a.shape == b.shape and np.array_equal(a, b)


async def test_inline_flags_set_the_request(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a blue circle --seed 99 --steps 5 --no red")
    message = result.response
    assert embed_field(message, "Seed") == "99"
    assert embed_field(message, "Steps") == "5"
    assert embed_field(message, "Negative prompt") == "red"
    assert result_title(message) == "a blue circle"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"prompt": "a red circle", "width": 100}, "multiple of 8"),
        ({"prompt": "a red circle --steps 0"}, "steps"),
        ({"prompt": "a red circle --count 9"}, "count"),
        ({"prompt": "a red circle --sparkle 3"}, "Unknown flag --sparkle"),
        ({"prompt": "a red circle", "init_image": ("notes.txt", b"not a picture")}, "init_image"),
        ({"prompt": "--seed 3"}, "prompt"),
    ],
)
async def test_invalid_input_gets_an_ephemeral_error_and_the_bot_carries_on(world, options, expected):
    refused = await world.alice.slash(world.channel, "imagine", **options)
    assert refused.response is not None and refused.response.ephemeral
    assert expected in refused.response.content
    assert not refused.deferred

    accepted = await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=3, steps=4)
    assert accepted.response.attachments


async def test_discord_itself_refuses_options_outside_their_declared_range(world):
    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=0)
    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.channel, "imagine", prompt="a red circle", count=9)


async def test_init_image_is_used_and_recorded(world):
    first = await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=11, steps=4)
    png = await attachment_bytes(first.response)
    result = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", seed=11, steps=4,
                                     init_image=("start.png", png), strength=0.5)
    message = result.response
    assert embed_field(message, "Init image") == "strength 0.5"
    record = await world.store.get_by_message(message.id)
    assert record.has_init_image and await world.store.read_init_image(record.id) == png


async def test_the_job_is_recorded_before_the_user_sees_thinking(world, monkeypatch):
    import discord

    rows_at_defer: list[int] = []
    original_defer = discord.InteractionResponse.defer

    async def checking_defer(self, *args, **kwargs):
        rows_at_defer.append(len(await world.store.history(world.alice.id)))
        return await original_defer(self, *args, **kwargs)

    monkeypatch.setattr(discord.InteractionResponse, "defer", checking_defer)
    await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=1, steps=4)
    await world.alice.slash(world.channel, "imagine", prompt="a blue circle", seed=2, steps=4)
    assert rows_at_defer == [1, 2]


async def test_each_accepted_command_is_validated_once(world, monkeypatch):
    service = world.bot.queue.scheduler
    calls: list[str] = []
    original_prepare = service.prepare

    def counting_prepare(request):
        calls.append(request.prompt)
        return original_prepare(request)

    monkeypatch.setattr(service, "prepare", counting_prepare)
    made = await world.alice.slash(world.channel, "imagine", prompt="a red circle --seed 3", steps=4)
    png = await attachment_bytes(made.response)
    await world.alice.slash(world.channel, "imagine", prompt="a blue circle", steps=4, init_image=("start.png", png))
    await world.alice.click(made.response, label="Reroll")
    assert calls == ["a red circle", "a blue circle", "a red circle"]


@pytest.mark.bot(allowed_guilds=[1234])
async def test_commands_outside_the_allowed_servers_are_refused(world):
    refused = await world.alice.slash(world.channel, "imagine", prompt="a red circle")
    assert refused.response.ephemeral and "not enabled in this server" in refused.response.content
    assert await world.store.history(world.alice.id) == []


class _BrokenRenderer:
    def __init__(self, renderer):
        self._renderer = renderer

    def __getattr__(self, name):
        return getattr(self._renderer, name)

    def render_batch(self, requests, **options):
        raise RuntimeError("the GPU caught fire")


def _broken_service(settings, waiter):
    from generation.queue.assembly import build_service

    service = build_service(settings, waiter)
    service.renderer = _BrokenRenderer(service.renderer)
    return service


@pytest.mark.bot(service=_broken_service)
async def test_a_failed_render_is_reported_with_its_job_id_and_kept_in_history(world):
    failed = await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    # In public only that it failed; the reason goes privately to the member who asked.
    assert "Job #1 failed." in failed.response.content and "GPU" not in failed.response.content
    (private,) = failed.followups
    assert private.ephemeral and "Rendering failed" in private.content and "GPU caught fire" in private.content
    record = await world.store.get(1)
    assert record.status is GenerationStatus.FAILED and "GPU caught fire" in record.failure_reason
    again = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", steps=4)
    assert "Job #2 failed." in again.response.content  # the bot is still answering


async def test_a_damaged_init_image_fails_the_job_with_a_private_reason(world):
    made = await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=11, steps=4)
    truncated = (await attachment_bytes(made.response))[:60]  # a PNG header and little else

    refused = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", steps=4,
                                      init_image=("start.png", truncated))

    # The picture is read after the job is recorded (downloading is slow), so the job fails: in public
    # only that, privately why.
    assert "Job #2 failed." in refused.response.content and not refused.response.attachments
    (private,) = refused.followups
    assert private.ephemeral and "init_image is not a readable picture" in private.content
    failed = await world.store.get(2)
    assert failed.status is GenerationStatus.FAILED and "not a readable picture" in failed.failure_reason
    accepted = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", seed=3, steps=4)
    assert accepted.response.attachments


@pytest.mark.bot(batch_images=1)  # positions of single-image calls
async def test_the_status_line_gives_the_queue_position_and_eta_right_after_the_defer(world):
    world.factory.hold_queue()
    first = await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    second = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", steps=4)

    assert _callback_types(world.env) == [5, 5]  # both deferred, then edited into the status line
    assert "⏳ Queued — position 2, ETA " in second.response.content
    assert "**a blue circle** · " in second.response.content
    assert "Cancel" in button_labels(second.response)
    world.factory.release_queue()
    await world.env.settle()
    assert first.response.attachments and second.response.attachments


@pytest.mark.bot(queue_per_user=2)
async def test_a_command_over_the_member_cap_is_refused_privately_and_leaves_no_history(world):
    world.factory.hold_queue()
    for seed in (1, 2):
        await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=seed, steps=4)
    refused = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", steps=4)
    assert refused.response.ephemeral
    assert "You already have 2 renders queued or running (the limit is 2)" in refused.response.content
    assert [record.prompt for record in await world.store.history(world.alice.id)] == ["a red circle"] * 2
    accepted = await world.bob.slash(world.channel, "imagine", prompt="a blue circle", steps=4)
    assert not accepted.response.ephemeral  # the cap is per member
    world.factory.release_queue()
    await world.env.settle()


@pytest.mark.bot(queue_total=2)
async def test_a_full_queue_refuses_privately_and_says_when_room_is_expected(world):
    world.factory.hold_queue()
    await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    await world.bob.slash(world.channel, "imagine", prompt="a blue circle", steps=4)
    refused = await world.bob.slash(world.channel, "imagine", prompt="a green circle", steps=4)
    assert refused.response.ephemeral
    assert refused.response.content.startswith("The render queue is full (2 jobs); room is expected in about ")
    assert [record.prompt for record in await world.store.history(world.bob.id)] == ["a blue circle"]
    world.factory.release_queue()
    await world.env.settle()


@pytest.mark.bot(max_pixels=88 * 64)  # sides within the shipped model's own limit (88)
async def test_a_member_default_that_clashes_with_a_typed_option_is_refused_privately(world):
    await world.alice.slash(world.channel, "settings", width=88)  # 88×64 fits the pixel cap
    refused = await world.alice.slash(world.channel, "imagine", prompt="a red circle", height=88)
    assert refused.response.ephemeral
    assert refused.response.content.startswith("88x88 is 7744 pixels; the limit is 5632 pixels")
    assert await world.store.history(world.alice.id) == []


async def test_permutations_make_one_generation_each_with_its_own_message(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a {red, blue} circle", seed=5, steps=4)
    records = sorted(await world.store.history(world.alice.id), key=lambda record: record.id)
    assert [record.prompt for record in records] == ["a red circle", "a blue circle"]
    assert result_title(result.response) == "a red circle" and result.response.attachments
    (second,) = result.followups
    assert result_title(second) == "a blue circle" and second.attachments and not second.ephemeral


@pytest.mark.bot(queue_per_user=3)
async def test_repeat_over_the_queue_cap_queues_nothing(world):
    refused = await world.alice.slash(world.channel, "imagine", prompt="a red circle --repeat 4", steps=4)
    assert refused.response.ephemeral and "the limit is 3" in refused.response.content
    assert await world.store.history(world.alice.id) == []
    accepted = await world.alice.slash(world.channel, "imagine", prompt="a red circle --repeat 3", steps=4)
    assert len(await world.store.history(world.alice.id)) == 3 and len(accepted.followups) == 2


async def test_tile_renders_a_seamless_image_and_is_recorded(world):
    tiled = (await world.alice.slash(world.channel, "imagine", prompt="a red circle --tile", seed=4, steps=4)).response
    plain = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=4, steps=4)).response
    record = await world.store.get_by_message(tiled.id)
    assert record.tiling is True and record.prompt == "a red circle"
    tiled_pixels = np.asarray(image_of(await attachment_bytes(tiled)).convert("RGB"), dtype=float)
    plain_pixels = np.asarray(image_of(await attachment_bytes(plain)).convert("RGB"), dtype=float)
    assert np.abs(tiled_pixels - plain_pixels).mean() > 1  # circular padding changed the render
    assert "Tiling: True" in image_of(await attachment_bytes(tiled)).info["parameters"]
    info = (await world.alice.click(tiled, label="Info")).response
    assert "**Seamless tiling:** yes" in info.embeds[0].description
    assert "--tile" in " ".join(info.embeds[0].fields[0].value.split())
