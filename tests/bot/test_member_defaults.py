"""/settings as a member uses it, through SimCord: shown, saved, validated, and applied by /imagine.

The test bot's server default for steps is 4 (conftest), the sampler default is DPM++ 2M.
"""

from __future__ import annotations

import pytest
import simcord
from bot_helpers import embed_field


def lines(message) -> list[str]:
    return message.embeds[0].description.split("\n")


def line_for(message, option: str) -> str:
    found = [line for line in lines(message) if f"(`{option}`)" in line]
    assert len(found) == 1, lines(message)
    return found[0]


async def test_settings_lists_the_server_defaults_for_a_new_member(world):
    result = await world.alice.slash(world.channel, "settings")
    message = result.response
    assert message.ephemeral
    assert message.embeds[0].title == "Your /imagine defaults"
    assert line_for(message, "steps") == "Steps (`steps`): 4 (server default)"
    assert line_for(message, "sampler") == "Sampler (`sampler`): DPM++ 2M (server default)"
    assert line_for(message, "guidance") == "Guidance (`guidance`): 5 (server default)"
    assert line_for(message, "width") == "Width (`width`): model's native size (server default)"
    assert line_for(message, "count") == "Images per prompt (`count`): 1 (server default)"
    assert line_for(message, "negative_prompt") == "Negative prompt (`negative_prompt`): none (server default)"


async def test_saved_defaults_apply_to_the_next_imagine_that_leaves_them_out(world):
    saved = await world.alice.slash(world.channel, "settings", steps=6, sampler="Euler a",
                                    negative_prompt="blurry")
    message = saved.response
    assert message.ephemeral
    assert message.embeds[0].title == "Saved. Your /imagine defaults"
    assert line_for(message, "steps") == "Steps (`steps`): **6** (server default: 4)"
    assert line_for(message, "sampler") == "Sampler (`sampler`): **Euler a** (server default: DPM++ 2M)"
    assert line_for(message, "negative_prompt") == (
        "Negative prompt (`negative_prompt`): **“blurry”** (server default: none)")

    made = await world.alice.slash(world.channel, "imagine", prompt="a green triangle", seed=3)
    record = await world.store.get_by_message(made.response.id)
    assert record.num_inference_steps == 6 and record.sampler == "Euler a" and record.negative_prompt == "blurry"
    assert embed_field(made.response, "Steps") == "6"
    assert embed_field(made.response, "Sampler") == "Euler a"
    assert embed_field(made.response, "Negative prompt") == "blurry"

    # An option given to /imagine wins over the saved default; other members keep the server's.
    explicit = await world.alice.slash(world.channel, "imagine", prompt="a green triangle", seed=3, steps=5)
    assert embed_field(explicit.response, "Steps") == "5"
    assert embed_field(explicit.response, "Sampler") == "Euler a"
    other = await world.bob.slash(world.channel, "imagine", prompt="a green triangle", seed=3)
    assert embed_field(other.response, "Steps") == "4"
    assert embed_field(other.response, "Sampler") == "DPM++ 2M"

    # Shown again later, the saved values are still there.
    shown = await world.alice.slash(world.channel, "settings")
    assert line_for(shown.response, "steps") == "Steps (`steps`): **6** (server default: 4)"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"width": 100}, "width must be a multiple of 8 from 32 to 1024, got 100."),
        ({"height": 1020}, "height must be a multiple of 8 from 32 to 1024, got 1020."),
    ],
)
async def test_invalid_settings_are_refused_naming_what_is_allowed(world, options, error):
    await world.alice.slash(world.channel, "settings", steps=7)

    result = await world.alice.slash(world.channel, "settings", **options)
    assert result.response.ephemeral
    assert result.response.content == f"{error} Nothing was saved."
    assert await world.store.member_defaults(world.alice.id) == {"num_inference_steps": 7}


@pytest.mark.bot(max_pixels=88 * 64)  # sides within the shipped model's own limit (88)
async def test_the_size_limit_applies_to_the_combined_width_and_height(world):
    await world.alice.slash(world.channel, "settings", width=88)
    result = await world.alice.slash(world.channel, "settings", height=88)
    assert result.response.ephemeral
    assert result.response.content == (
        "88x88 is 7744 pixels; the limit is 5632 pixels (for example 72x72). Nothing was saved.")
    assert await world.store.member_defaults(world.alice.id) == {"width": 88}


async def test_sampler_is_offered_as_a_choice_of_the_known_samplers(world):
    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.channel, "settings", sampler="Euler b")


async def test_reset_returns_to_the_server_defaults(world):
    await world.alice.slash(world.channel, "settings", steps=6, sampler="Euler a")

    result = await world.alice.slash(world.channel, "settings", reset=True)
    message = result.response
    assert message.ephemeral
    assert message.embeds[0].title == "Your defaults were cleared; /imagine uses the server defaults"
    assert line_for(message, "steps") == "Steps (`steps`): 4 (server default)"
    assert await world.store.member_defaults(world.alice.id) == {}

    made = await world.alice.slash(world.channel, "imagine", prompt="a yellow square", seed=2)
    assert embed_field(made.response, "Steps") == "4"
    assert embed_field(made.response, "Sampler") == "DPM++ 2M"

    # reset with values: start over from just those values.
    await world.alice.slash(world.channel, "settings", steps=6, guidance=7.5)
    again = await world.alice.slash(world.channel, "settings", reset=True, count=2)
    assert again.response.embeds[0].title == "Saved. Your /imagine defaults"
    assert await world.store.member_defaults(world.alice.id) == {"count": 2}


async def test_the_settings_panel_sets_a_sampler_and_a_shape_and_clears_one_default(world):
    shown = (await world.alice.slash(world.channel, "settings", steps=6)).response
    picked = (await world.alice.select(shown, ["Euler a"], custom_id=_custom_id(shown, "Default sampler…"))).response
    assert line_for(picked, "sampler").startswith("Sampler (`sampler`): **Euler a**")
    shaped = (await world.alice.select(picked, ["16:9"], custom_id=_custom_id(picked, "Default shape…"))).response
    assert await world.store.member_defaults(world.alice.id) == {
        "num_inference_steps": 6, "sampler": "Euler a", "width": 88, "height": 48}

    cleared = (await world.alice.select(shaped, ["num_inference_steps"],
                                        custom_id=_custom_id(shaped, "Clear one default…"))).response
    assert line_for(cleared, "steps") == "Steps (`steps`): 4 (server default)"
    assert await world.store.member_defaults(world.alice.id) == {"sampler": "Euler a", "width": 88, "height": 48}
    await world.alice.click(cleared, label="Reset all")
    assert await world.store.member_defaults(world.alice.id) == {}


def _custom_id(message, placeholder: str) -> str:
    for row in message.components:
        for component in row.get("components", []):
            if component.get("placeholder") == placeholder:
                return component["custom_id"]
    raise AssertionError(f"no select {placeholder!r}")
