"""NSFW handling, DMs and user installs, through SimCord.

Flagging comes from three places here: a fake classifier that flags by colour (red), a tiny local
`transformers` classifier built in a fixture, and a renderer whose "safety checker" flags red prompts
(blanking the image, as SD 1.5's does).

SimCord 3.2 cannot make a channel age-restricted: its channel model has no `nsfw` field, channel
payloads never carry one and a channel edit ignores it. The tests therefore set `nsfw` on the bot's own
cached channel object, which is exactly what the bot reads (`channel.is_nsfw()`) on real Discord.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import discord
import numpy as np
import pytest
from bot_helpers import attachment_bytes, image_of, is_spoiler

from generation.queue.assembly import build_service
from generation.queue.classifier import TransformersClassifier, build_classifier
from bot.settings import Settings
from generation import RenderResult

RED = "a red square on a green background"
BLUE = "a blue circle on a green background"


def red_share(image: Any) -> float:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return float(((red > 120) & (red > green + 60) & (red > blue + 60)).mean())


class RedFlagger:
    """A fake NSFW classifier: anything with a good share of red is "NSFW"."""

    def __init__(self) -> None:
        self.seen = 0

    def flags(self, images: list[Any]) -> list[bool]:
        self.seen += len(images)
        return [red_share(image) > 0.05 for image in images]


class SafetyCheckedRenderer:
    """The real renderer, with a pretend safety checker: red prompts come back black and flagged."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)

    def render_batch(self, requests: list[Any], **options: Any) -> list[RenderResult]:
        return [self.checked(result) for result in self._renderer.render_batch(requests, **options)]

    @staticmethod
    def checked(result: RenderResult) -> RenderResult:
        if "red" not in result.request.prompt:
            return result
        images = [dataclasses.replace(image, image=image.image.point(lambda _: 0), nsfw=True) for image in result.images]
        return dataclasses.replace(result, images=images)


def safety_checked_service(settings: Any, waiter: Any) -> Any:
    service = build_service(settings, waiter)
    service.renderer = SafetyCheckedRenderer(service.renderer)
    return service


def mod_log(world: Any) -> Any:
    return world.guild.create_text_channel("mod-log")


async def set_policy(world: Any, policy: str | None, log_channel: Any = None) -> None:
    await world.store.update_guild_config(world.guild.id, nsfw_policy=policy,
                                          mod_log_channel_id=log_channel.id if log_channel else None)


def age_restrict(world: Any, channel: Any) -> None:
    """What an admin's "Age-Restricted Channel" switch does to the bot's view of the channel (see above)."""
    cached = world.bot.get_channel(channel.id)
    cached.nsfw = True
    assert cached.is_nsfw()


@pytest.fixture
def tiny_classifier(tmp_path: Path) -> Path:
    """A tiny ViT image classifier saved as a local folder; its head always says "nsfw" (p ≈ 0.98)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=32, patch_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, id2label={0: "normal", 1: "nsfw"}, label2id={"normal": 0, "nsfw": 1})
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 4.0]))
    folder = tmp_path / "tiny-nsfw-vit"
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- the classifier itself


def test_a_local_transformers_classifier_flags_by_its_labels_and_threshold(tiny_classifier: Path) -> None:
    from PIL import Image

    images = [Image.new("RGB", (64, 64), (200, 0, 0)), Image.new("L", (40, 24))]
    assert TransformersClassifier(str(tiny_classifier), ["NSFW"], 0.5).flags(images) == [True, True]
    assert TransformersClassifier(str(tiny_classifier), ["normal"], 0.5).flags(images) == [False, False]
    assert TransformersClassifier(str(tiny_classifier), ["nsfw"], 0.99).flags(images) == [False, False]
    def from_settings(settings: Settings) -> object:
        return build_classifier(settings.nsfw_classifier, settings.nsfw_classifier_labels,
                                settings.nsfw_classifier_threshold)

    assert from_settings(Settings(_env_file=None)) is None
    built = from_settings(Settings(_env_file=None, nsfw_classifier=str(tiny_classifier),
                                   nsfw_classifier_labels="porn, nsfw"))
    assert isinstance(built, TransformersClassifier) and built.labels == {"porn", "nsfw"}


async def test_the_local_classifier_runs_on_results_in_the_bot(world, tiny_classifier: Path) -> None:
    world.bot.services.finisher.classifier = TransformersClassifier(str(tiny_classifier), ["nsfw"], 0.5)
    await set_policy(world, "spoiler")
    result = await world.alice.slash(world.channel, "imagine", prompt=BLUE, steps=4, seed=3)
    assert result.response.attachments[0].filename.startswith("SPOILER_")
    assert [image.nsfw for image in (await world.store.get(1)).images] == ["classifier"]


# ---------------------------------------------------------------- policies


async def test_spoiler_policy_posts_flagged_images_as_spoilers_and_others_as_usual(world) -> None:
    world.bot.services.finisher.classifier = RedFlagger()
    logs = mod_log(world)
    await set_policy(world, "spoiler", logs)
    flagged = await world.alice.slash(world.channel, "imagine", prompt=RED, steps=4, seed=3)
    (attachment,) = flagged.response.attachments
    assert attachment.filename.startswith("SPOILER_") and attachment.filename.endswith(".png")
    assert is_spoiler(flagged.response)  # no unblurred copy in an embed; a spoiler in the gallery
    assert red_share(image_of(await attachment_bytes(flagged.response))) > 0.05
    clean = await world.alice.slash(world.channel, "imagine", prompt=BLUE, steps=4, seed=3)
    assert not clean.response.attachments[0].filename.startswith("SPOILER_")
    (entry,) = [line for line in (m.content for m in logs.history()) if line.startswith("🔞")]
    assert "generation #1" in entry and "posted as a spoiler" in entry
    assert f"/{world.channel.id}/{flagged.response.id}" in entry
    # /show applies the same policy.
    shown = await world.alice.slash(world.channel, "show", id=1)
    assert shown.response.attachments[0].filename.startswith("SPOILER_")


async def test_block_policy_holds_the_image_back_keeps_it_flagged_and_tells_the_owner(world) -> None:
    world.bot.services.finisher.classifier = RedFlagger()
    logs = mod_log(world)
    await set_policy(world, "block", logs)
    held = await world.alice.slash(world.channel, "imagine", prompt=RED, steps=4, seed=3)
    assert "held back" in held.response.content and not held.response.attachments
    (private,) = held.followups
    assert private.ephemeral and "NSFW classifier" in private.content and "/history" in private.content
    record = await world.store.get(1)
    assert record.delivery_failure.startswith("held back") and record.message_id is None
    assert [image.nsfw for image in record.images] == ["classifier"]
    history = await world.alice.slash(world.channel, "history")
    assert "not posted: held back" in history.response.embeds[0].description
    refused = await world.alice.slash(world.channel, "show", id=1)
    assert refused.ephemeral and "can't be shown here" in refused.response.content
    (entry,) = [m.content for m in logs.history() if m.content.startswith("🔞")]
    assert "held back" in entry and f"<@{world.alice.id}>" in entry
    # A restart does not post it after all.
    posted_before = len(world.channel.history())
    await world.restart()
    await world.env.settle()
    assert len(world.channel.history()) == posted_before


async def test_a_server_without_a_policy_gets_the_operators_default(world) -> None:
    world.bot.services.finisher.classifier = RedFlagger()
    assert world.bot.settings.nsfw_policy == "block"
    held = await world.alice.slash(world.channel, "imagine", prompt=RED, steps=4, seed=3)
    assert "held back" in held.response.content and not held.response.attachments


async def test_allow_policy_posts_flagged_images_as_they_are(world) -> None:
    world.bot.services.finisher.classifier = RedFlagger()
    await set_policy(world, "allow")
    posted = await world.alice.slash(world.channel, "imagine", prompt=RED, steps=4, seed=3)
    assert not posted.response.attachments[0].filename.startswith("SPOILER_")
    assert [image.nsfw for image in (await world.store.get(1)).images] == ["classifier"]


async def test_age_restricted_channels_post_as_usual_without_classifying(world) -> None:
    classifier = world.bot.services.finisher.classifier = RedFlagger()
    await set_policy(world, "block")
    adult = world.guild.create_text_channel("after-dark")
    age_restrict(world, adult)
    posted = await world.alice.slash(adult, "imagine", prompt=RED, steps=4, seed=3)
    (attachment,) = posted.response.attachments
    assert not attachment.filename.startswith("SPOILER_") and classifier.seen == 0
    assert red_share(image_of(await attachment_bytes(posted.response))) > 0.05
    # The same request in a normal channel is classified and held back.
    held = await world.alice.slash(world.channel, "imagine", prompt=RED, steps=4, seed=3)
    assert "held back" in held.response.content and classifier.seen == 1


@pytest.mark.bot(service=safety_checked_service)
async def test_the_models_own_safety_checker_is_never_posted_as_a_black_square(world) -> None:
    logs = mod_log(world)
    await set_policy(world, "allow", logs)
    adult = world.guild.create_text_channel("after-dark")
    age_restrict(world, adult)
    for channel in (world.channel, adult):
        held = await world.alice.slash(channel, "imagine", prompt=RED, steps=4)
        assert "held back" in held.response.content and not held.response.attachments
        (private,) = held.followups
        assert private.ephemeral and "safety checker" in private.content and "blank" in private.content
    assert [image.nsfw for image in (await world.store.get(1)).images] == ["safety_checker"]
    assert sum(m.content.startswith("🔞") for m in logs.history()) == 2
    fine = await world.alice.slash(world.channel, "imagine", prompt=BLUE, steps=4)
    assert fine.response.attachments


# ---------------------------------------------------------------- DMs and user installs


async def test_imagine_works_in_a_dm_and_stays_in_history(world) -> None:
    await world.store.update_guild_config(world.guild.id, banned_words=["circle"], daily_quota=1)
    alice = world.alice.user
    result = await alice.slash("imagine", prompt=BLUE, steps=4, seed=3)  # the server's rules stay in the server
    assert not result.ephemeral and result.response.attachments
    record = await world.store.get(1)
    assert record.guild_id is None and record.message_id is not None
    again = await alice.slash("imagine", prompt=BLUE, steps=4, seed=4)
    assert again.response.attachments
    history = await alice.slash("history")
    assert history.ephemeral and "#2" in history.response.embeds[0].description


async def test_in_a_dm_a_result_goes_only_through_the_interaction(world) -> None:
    alice = world.alice.user
    world.factory.hold_queue()
    pending = await alice.slash("imagine", prompt=BLUE, steps=4, seed=3)
    assert "Queued" in pending.response.content
    await world.env.advance_time(16 * 60)  # the interaction token expires meanwhile
    world.factory.release_queue()
    await world.env.settle()
    record = await world.store.get(1)
    assert record.message_id is None and "interaction expired" in record.delivery_failure
    bot_posts = [m for m in alice.dm_channel.history() if m.author.id == world.bot.user.id and m.attachments]
    assert bot_posts == []  # no channel fallback


async def test_from_a_user_install_the_servers_policy_does_not_apply_and_results_come_through_the_interaction(
        world) -> None:
    """SimCord always adds the bot to its guilds; dropping the guild from the bot's cache is what a server
    that did not add the bot (a member's own install) looks like to it."""
    await world.store.update_guild_config(world.guild.id, banned_words=["circle"])
    refused = await world.alice.slash(world.channel, "imagine", prompt=BLUE, steps=4)
    assert refused.ephemeral  # the policy applies where the bot is installed
    world.bot._connection._remove_guild(world.bot.get_guild(world.guild.id))
    assert world.bot.get_guild(world.guild.id) is None
    result = await world.alice.slash(world.channel, "imagine", prompt=BLUE, steps=4, seed=3)
    assert not result.ephemeral and result.response.attachments
    record = await world.store.get(1)
    assert record.guild_id == world.guild.id and record.message_id == result.response.id
    config = await world.alice.slash(world.channel, "history")
    assert "#1" in config.response.embeds[0].description


async def test_a_result_made_in_an_age_restricted_channel_is_unchecked_elsewhere(world) -> None:
    classifier = world.bot.services.finisher.classifier = RedFlagger()
    logs = mod_log(world)
    await set_policy(world, "block", logs)
    adult = world.guild.create_text_channel("after-dark")
    age_restrict(world, adult)
    posted = await world.alice.slash(adult, "imagine", prompt=BLUE, steps=4, seed=3)
    assert posted.response.attachments and classifier.seen == 0
    assert [image.nsfw for image in (await world.store.get(1)).images] == ["unchecked"]
    assert not [m for m in logs.history() if m.content.startswith("🔞")]  # nothing was caught
    # Shown again in a normal channel it is treated like a flagged image there: it was never checked.
    refused = await world.alice.slash(world.channel, "show", id=1)
    assert refused.ephemeral and "not checked" in refused.response.content
    again = await world.alice.slash(adult, "show", id=1)
    assert again.response.attachments and not again.response.attachments[0].filename.startswith("SPOILER_")
    await set_policy(world, "spoiler", logs)
    spoiler = await world.alice.slash(world.channel, "show", id=1)
    assert spoiler.response.attachments[0].filename.startswith("SPOILER_")
