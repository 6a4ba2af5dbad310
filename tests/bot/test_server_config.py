"""/config and the rules it sets, through SimCord: who may use it, banned words, quotas, channels, models,
server defaults, the mod log, and that a restart keeps all of it."""

from __future__ import annotations

from typing import Any

import discord
import pytest
import simcord

from bot.policy import banned_phrase_in, normalize, quota_window


def make_admin(world: Any, name: str = "carol") -> Any:
    """A member with Manage Server (and Manage Messages, as moderators have)."""
    role = world.guild.create_role("admins", permissions=discord.Permissions(manage_guild=True, manage_messages=True))
    return world.guild.add_member(world.env.create_user(name), roles=[role])


def log_lines(channel: Any) -> list[str]:
    return [message.content for message in channel.history()]


async def configure(world: Any, admin: Any, subcommand: str, **options: Any) -> Any:
    result = await admin.slash(world.channel, f"config {subcommand}", **options)
    assert result.ephemeral, result
    return result


# ---------------------------------------------------------------- the rules as functions


def test_banned_words_match_whole_words_whatever_the_case_accents_or_width() -> None:
    banned = ["cat", "Café", "red panda"]
    assert banned_phrase_in(["a CAT on a mat"], banned) == "cat"
    assert banned_phrase_in(["ａ ｃａｔ"], banned) == "cat"  # full-width
    assert banned_phrase_in(["un CAFE noir"], banned) == "cafe"  # accents either way
    assert banned_phrase_in(["the café"], ["cafe"]) == "cafe"
    assert banned_phrase_in(["a RED   Pandá!"], banned) == "red panda"
    assert banned_phrase_in(["a category of concatenated cats"], banned) is None  # whole words only
    assert banned_phrase_in(["a red circle, a panda"], banned) is None  # a phrase is consecutive words
    assert banned_phrase_in(["", "fine"], []) is None
    assert normalize("Straße") == "strasse"


def test_the_quota_day_is_the_utc_day() -> None:
    from datetime import UTC, datetime

    start, reset = quota_window(datetime(2026, 11, 30, 17, 5, tzinfo=UTC))
    assert start == datetime(2026, 11, 30, tzinfo=UTC) and reset == datetime(2026, 12, 1, tzinfo=UTC)


# ---------------------------------------------------------------- who may configure


async def test_a_member_without_manage_server_is_refused_config(world) -> None:
    # Discord itself hides the command from them (default_permissions = Manage Server)…
    with pytest.raises(simcord.SetupError, match="default-member-permissions"):
        await world.bob.slash(world.channel, "config nsfw", policy="allow")
    # …and where a server's own command settings let them see it, the bot refuses in code.
    command = world.env.backend.find_command("config", world.guild.id)
    world.guild.set_command_permissions(int(command["id"]), {world.bob: True})
    refused = await world.bob.slash(world.channel, "config nsfw", policy="allow")
    assert refused.ephemeral and "Manage Server" in refused.response.content
    assert (await world.store.guild_config(world.guild.id)).nsfw_policy is None
    shown = await world.bob.slash(world.channel, "config show")
    assert shown.ephemeral and "Manage Server" in shown.response.content


async def test_config_is_for_servers_only_and_imagine_for_every_install_and_context(world) -> None:
    config = world.env.backend.find_command("config", world.guild.id)
    assert config["contexts"] == [0] and config["integration_types"] == [0]
    assert int(config["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
    for name in ("imagine", "history", "show", "settings", "queue"):
        command = world.env.backend.find_command(name, world.guild.id)
        assert sorted(command["contexts"]) == [0, 1, 2] and sorted(command["integration_types"]) == [0, 1], name


# ---------------------------------------------------------------- each setting, the mod log and restarts


async def test_an_admin_sets_every_setting_each_change_is_logged_and_a_restart_keeps_them(world) -> None:
    admin = make_admin(world)
    logs = world.guild.create_text_channel("mod-log")
    other = world.env.create_guild("Second Server")
    other_channel = other.create_text_channel("art")
    other_admin = make_admin(type("W", (), {"guild": other, "env": world.env})(), "dave")

    await configure(world, admin, "mod_log", channel=logs)
    await configure(world, admin, "nsfw", policy="spoiler")
    await configure(world, admin, "banned_words", add="Bad Word, cat")
    await configure(world, admin, "limits", queue_cap=2, daily_quota=10)
    await configure(world, admin, "models", allow="tinyshapes")
    await configure(world, admin, "channels", add=world.channel)
    saved = await configure(world, admin, "defaults", steps=6, guidance=4.0)
    embed = saved.response.embeds[0]
    assert "Saved" in embed.title and any("Steps (`steps`): **6**" in field.value for field in embed.fields)
    other_saved = await other_admin.slash(other_channel, "config nsfw", policy="allow")
    assert other_saved.ephemeral

    entries = log_lines(logs)
    assert len(entries) == 7 and all(entry.startswith("⚙️") and f"<@{admin.id}>" in entry for entry in entries)
    assert any("NSFW policy → spoiler" in entry for entry in entries)
    assert any("defaults: num_inference_steps → 6" in entry for entry in entries)

    before = await world.store.guild_config(world.guild.id)
    assert before.nsfw_policy == "spoiler" and before.banned_words == ("Bad Word", "cat")
    assert before.queue_cap == 2 and before.daily_quota == 10 and before.allowed_models == ("tinyshapes",)
    assert before.allowed_channel_ids == (world.channel.id,) and before.mod_log_channel_id == logs.id
    assert before.defaults == {"num_inference_steps": 6, "guidance_scale": 4.0}

    await world.restart()
    assert await world.store.guild_config(world.guild.id) == before
    assert (await world.store.guild_config(other.id)).nsfw_policy == "allow"
    shown = await admin.slash(world.channel, "config show")
    text = str(shown.response.embeds[0].to_dict())
    assert "spoiler" in text and "Bad Word" in text and f"<#{logs.id}>" in text
    # The server default applies to /imagine (under the member's own defaults and typed options).
    made = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", seed=1)
    assert (await world.store.get(1)).num_inference_steps == 6 and not made.ephemeral
    mine = await world.alice.slash(world.channel, "settings")
    assert "Steps (`steps`): 6 (server default)" in mine.response.embeds[0].description
    await world.alice.slash(world.channel, "settings", steps=5)
    await world.alice.slash(world.channel, "imagine", prompt="a blue circle", seed=1)
    await world.alice.slash(world.channel, "imagine", prompt="a blue circle --steps 4", seed=1)
    assert [(await world.store.get(n)).num_inference_steps for n in (2, 3)] == [5, 4]


async def test_server_defaults_must_fit_the_operators_limits(world) -> None:
    admin = make_admin(world)
    refused = await admin.slash(world.channel, "config defaults", width=1020, height=64)
    assert refused.ephemeral and "multiple of 8" in refused.response.content and "Nothing was saved" in refused.response.content
    with pytest.raises(simcord.OptionError):  # above MAX_STEPS: Discord's own option range refuses it
        await admin.slash(world.channel, "config defaults", steps=500)
    assert (await world.store.guild_config(world.guild.id)).defaults == {}
    too_many = await admin.slash(world.channel, "config limits", queue_cap=50)
    assert "at most 5" in too_many.response.content


# ---------------------------------------------------------------- refusals


async def test_a_banned_word_is_refused_privately_before_anything_is_queued(world) -> None:
    admin = make_admin(world)
    logs = world.guild.create_text_channel("mod-log")
    await configure(world, admin, "mod_log", channel=logs)
    await configure(world, admin, "banned_words", add="cat, red panda")

    for options in ({"prompt": "a ＣＡＴ on a mat"}, {"prompt": "a circle", "negative_prompt": "Cât"},
                    {"prompt": "a circle --no cat"}, {"prompt": "a Red  Panda"}):
        refused = await world.alice.slash(world.channel, "imagine", steps=4, **options)
        assert refused.ephemeral and not refused.deferred, options
        assert "does not allow" in refused.response.content and "cat" not in refused.response.content.lower()
    assert await world.store.count_history(world.alice.id) == 0
    assert world.bot.queue.snapshot().entries == []
    refusals = [line for line in log_lines(logs) if line.startswith("⛔")]
    assert len(refusals) == 4 and all(f"<@{world.alice.id}>" in line and "banned word" in line for line in refusals)
    assert f"https://discord.com/channels/{world.guild.id}/{world.channel.id}" in refusals[0]

    fine = await world.alice.slash(world.channel, "imagine", prompt="a category of concatenated shapes", steps=4)
    assert not fine.ephemeral and fine.response.attachments


async def test_an_exhausted_daily_quota_says_when_it_resets_and_survives_a_restart(world) -> None:
    admin = make_admin(world)
    logs = world.guild.create_text_channel("mod-log")
    await configure(world, admin, "mod_log", channel=logs)
    await configure(world, admin, "limits", daily_quota=3)

    await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4, count=2)
    too_many = await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4, count=2)
    assert too_many.ephemeral and "2 of this server's 3 images" in too_many.response.content
    _, reset = quota_window(discord.utils.utcnow())
    assert f"<t:{int(reset.timestamp())}:R>" in too_many.response.content
    await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    await world.restart()
    refused = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", steps=4)
    assert refused.ephemeral and "3 of this server's 3 images" in refused.response.content
    assert f"<t:{int(reset.timestamp())}:R>" in refused.response.content
    assert await world.store.count_history(world.alice.id) == 2
    # Buttons render images too, and count against the same quota.
    reroll = await world.alice.click(world.channel.last_message, label="Reroll")
    assert reroll.ephemeral and "resets" in reroll.response.content
    # The quota is per member.
    assert not (await world.bob.slash(world.channel, "imagine", prompt="a blue circle", steps=4)).ephemeral
    assert sum(line.startswith("⛔") and "daily quota" in line for line in log_lines(logs)) == 3


async def test_channels_models_and_the_queue_cap_of_a_server(world) -> None:
    admin = make_admin(world)
    elsewhere = world.guild.create_text_channel("general")
    await configure(world, admin, "channels", add=world.channel)
    refused = await world.alice.slash(elsewhere, "imagine", prompt="a red circle", steps=4)
    assert refused.ephemeral and f"<#{world.channel.id}>" in refused.response.content
    await configure(world, admin, "channels", everywhere=True)
    assert not (await world.alice.slash(elsewhere, "imagine", prompt="a red circle", steps=4)).ephemeral

    await configure(world, admin, "limits", queue_cap=1)
    world.factory.hold_queue()
    await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    capped = await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    assert capped.ephemeral and "the limit is 1" in capped.response.content
    world.factory.release_queue()
    await world.env.settle()
    assert await world.store.count_history(world.alice.id) == 2  # one per channel test above, one queued


async def test_only_allowed_models_may_be_used(world) -> None:
    admin = make_admin(world)
    await world.store.update_guild_config(world.guild.id, allowed_models=["some-other-model"])
    refused = await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    assert refused.ephemeral and "some-other-model" in refused.response.content
    choices = await admin.autocomplete(world.channel, "config models", "allow", "TINY")
    assert [choice["value"] for choice in choices] == ["tinyshapes"]
    unknown = await admin.slash(world.channel, "config models", allow="nonexistent")
    assert "Unknown model" in unknown.response.content
    await configure(world, admin, "models", everything=True)
    assert not (await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)).ephemeral


async def test_a_moderators_deletion_is_logged_with_a_link(world) -> None:
    admin = make_admin(world)
    logs = world.guild.create_text_channel("mod-log")
    await configure(world, admin, "mod_log", channel=logs)
    made = await world.alice.slash(world.channel, "imagine", prompt="a red circle", steps=4)
    await world.alice.click(made.response, label="Delete")  # the owner: nothing to log
    assert not any(line.startswith("🗑️") for line in log_lines(logs))
    made = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", steps=4)
    message_id = made.response.id
    await admin.click(made.response, label="Delete")
    (entry,) = [line for line in log_lines(logs) if line.startswith("🗑️")]
    assert f"<@{admin.id}> deleted generation #2 of <@{world.alice.id}>" in entry
    assert f"https://discord.com/channels/{world.guild.id}/{world.channel.id}/{message_id}" in entry
