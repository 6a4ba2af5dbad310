"""A command that makes several jobs (`--repeat`, `{a, b}` permutations) fits the daily quota as a whole:
all its images or none, and the refusal says how many are left."""

from __future__ import annotations

from tests.bot.test_server_config import configure, make_admin


async def test_repeat_and_permutations_fit_the_daily_quota_as_a_whole(world) -> None:
    await configure(world, make_admin(world), "limits", daily_quota=2)

    repeated = await world.alice.slash(world.channel, "imagine", prompt="a green circle --repeat 3", steps=4)
    assert repeated.ephemeral, repeated
    assert "0 of this server's 2 images" in repeated.response.content
    assert "2 left" in repeated.response.content and "asks for at least 3" in repeated.response.content
    permutations = await world.alice.slash(world.channel, "imagine", prompt="a {red, green, blue} circle", steps=4)
    assert permutations.ephemeral and "2 left" in permutations.response.content
    many = await world.alice.slash(world.channel, "imagine", prompt="a red circle --repeat 5 --count 4", steps=4)
    assert many.ephemeral and "2 left" in many.response.content
    assert await world.store.count_history(world.alice.id) == 0  # nothing of a refused command was recorded

    fits = await world.alice.slash(world.channel, "imagine", prompt="a {red, green} circle", steps=4)
    assert not fits.ephemeral, fits
    assert await world.store.count_history(world.alice.id) == 2
