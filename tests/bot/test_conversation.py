"""Conversation turns in SimCord: replies to results, mentions, DMs and 💬 Continue threads, with and without
Discord's Message Content intent; the server's rules; duplicate deliveries; a turn left half-done by a restart."""

from __future__ import annotations

import pytest
from bot_helpers import button_labels, embed_field, message_text, result_title
from simcord.backend.models.message import AllowedMentions

from storage import GenerationKind, TurnState

START = "a red circle on a blue background"


def bot_messages(world, channel=None):
    """The bot's messages in the channel, oldest first."""
    me = world.env.bot.user.id
    return [message for message in (channel or world.channel).history() if message.author.id == me]


def answer_to(world, sent, channel=None):
    """The bot's reply to `sent` (exactly one)."""
    [found] = [message for message in bot_messages(world, channel)
               if message.reference is not None and message.reference.message_id == sent.id]
    return found


async def mention(world, member, words, channel=None, **options):
    return await member.send(channel or world.channel, f"{world.env.bot.user.mention} {words}", **options)


async def started(world, member=None, words=f"{START} --seed 7"):
    """A first result, made by mentioning the bot; returns the result message."""
    sent = await mention(world, member or world.alice, words)
    await world.env.settle()
    return answer_to(world, sent)


async def plain_reply(world, member, target, words, channel=None):
    """A reply with the ping switched off (Discord's "@ OFF"): the bot is not mentioned."""
    channel = channel or world.channel
    backend = world.env.backend
    reference = backend.normalize_message_reference(
        channel.id, {"channel_id": str(channel.id), "message_id": str(target.id)})
    stored = backend.create_message(channel.id, member.id, words, reference=reference,
                                    allowed_mentions=AllowedMentions(replied_user=False))
    await world.env.settle()
    return stored


async def made(world):
    return await world.store.count_history(world.alice.id) + await world.store.count_history(world.bob.id)


# ---------------------------------------------------------------- where a turn happens


async def test_a_mention_is_a_new_request_and_its_result_replies_to_the_message(world):
    sent = await mention(world, world.alice, f"{START} --seed 7")
    await world.env.settle()
    result = answer_to(world, sent)
    assert result_title(result) == START
    record = await world.store.get_by_message(result.id)
    assert record.kind is GenerationKind.IMAGINE and record.seed == 7 and record.owner_id == world.alice.id
    assert record.turn_text == f"{START} --seed 7"
    turn = await world.store.turns.get(sent.id)
    assert turn.state is TurnState.QUEUED and turn.generation_id == record.id
    assert "Continue" in button_labels(result) and "Not what I meant" in button_labels(result)


async def test_a_reply_that_pings_the_bot_changes_that_result_seed_kept(world):
    first = await started(world)
    sent = await world.alice.send(world.channel, "make it green", reply_to=first)  # a reply pings by default
    result = answer_to(world, sent)
    parent = await world.store.get_by_message(first.id)
    child = await world.store.get_by_message(result.id)
    assert child.parent_id == parent.id and child.kind is GenerationKind.EDIT
    assert child.prompt == "a green circle on a blue background" and child.seed == 7
    assert child.turn_text == "make it green"
    assert "**Turn:** “make it green” → a green circle on a blue background · seed 7 kept" in message_text(result)
    info = await world.alice.click(result, label="Info")
    assert "→ a green circle on a blue background · seed 7 kept" in info.response.embeds[0].description
    history = await world.alice.slash(world.channel, "history")
    assert "make it green" in history.response.embeds[0].description


async def test_actions_route_to_the_button_paths(world):
    first = await started(world)
    again = answer_to(world, await world.alice.send(world.channel, "again", reply_to=first))
    rerolled = await world.store.get_by_message(again.id)
    assert rerolled.kind is GenerationKind.REROLL and rerolled.seed != 7 and rerolled.prompt == START
    zoomed = answer_to(world, await world.alice.send(world.channel, "zoom out", reply_to=first))
    record = await world.store.get_by_message(zoomed.id)
    assert record.kind is GenerationKind.ZOOM and record.edit_factor == 2.0
    assert "“zoom out” → Zoom Out 2×" in message_text(zoomed)


async def test_without_the_intent_a_reply_without_a_ping_gets_one_answer_saying_how_to_be_read(world):
    first = await started(world)
    before = await made(world)
    sent = await plain_reply(world, world.alice, first, "make it green")
    reply = answer_to(world, sent)
    assert "Message Content intent" in reply.content and "@mention" in reply.content
    assert await made(world) == before
    assert (await world.store.turns.get(sent.id)).state is TurnState.ANSWERED


@pytest.mark.bot(message_content=True)
async def test_with_the_intent_a_plain_reply_is_a_turn(world):
    first = await started(world)
    sent = await plain_reply(world, world.alice, first, "make it green")
    child = await world.store.get_by_message(answer_to(world, sent).id)
    assert child.prompt == "a green circle on a blue background" and child.seed == 7


async def test_dms_continue_from_the_latest_result_and_new_starts_over(world):
    dm = world.alice.user.dm_channel
    user = world.alice.user
    first = answer_to(world, await user.send_dm(f"{START} --seed 3"), dm)
    assert result_title(first) == START
    second = answer_to(world, await user.send_dm("make it green"), dm)
    child = await world.store.get_by_message(second.id)
    assert child.prompt == "a green circle on a blue background" and child.seed == 3
    assert child.parent_id == (await world.store.get_by_message(first.id)).id
    third = answer_to(world, await user.send_dm("on a yellow background"), dm)
    assert (await world.store.get_by_message(third.id)).prompt == "a green circle on a yellow background"
    fresh = answer_to(world, await user.send_dm("new: a white square on a black background"), dm)
    record = await world.store.get_by_message(fresh.id)
    assert record.prompt == "a white square on a black background" and record.parent_id is None
    assert "Continue" not in button_labels(fresh)  # no threads in DMs


@pytest.mark.parametrize("message_content", [False, pytest.param(True, marks=pytest.mark.bot(message_content=True))])
async def test_continue_opens_a_thread_where_each_message_changes_its_latest_result(world, message_content):
    assert world.bot.intents.message_content is message_content
    first = await started(world)
    opened = await world.alice.click(first, label="Continue")
    assert opened.response.ephemeral
    [thread] = world.channel.threads
    sent = await mention(world, world.alice, "make it green", channel=thread)
    green = await world.store.get_by_message(answer_to(world, sent, thread).id)
    assert green.prompt == "a green circle on a blue background" and green.channel_id == thread.id
    plain = await world.alice.send(thread, "wider")
    reply = answer_to(world, plain, thread)
    if message_content:
        wider = await world.store.get_by_message(reply.id)
        assert wider.parent_id == green.id and wider.width > wider.height
    else:
        assert "Message Content intent" in reply.content
        assert (await world.store.turns.get(plain.id)).state is TurnState.ANSWERED


async def test_not_what_i_meant_opens_the_edit_form_on_the_parent_filled_with_the_reading(world):
    first = await started(world)
    result = answer_to(world, await world.alice.send(world.channel, "make it green", reply_to=first))
    shown = await world.alice.click(result, label="Not what I meant")
    assert shown.modal is not None and "a green circle on a blue background" in str(shown.modal)
    fixed = (await world.alice.submit_modal(shown, {"prompt": "a green square on a blue background"})).response
    record = await world.store.get_by_message(fixed.id)
    parent = await world.store.get_by_message(first.id)
    assert record.parent_id == parent.id and record.seed == 7
    assert record.prompt == "a green square on a blue background"


@pytest.mark.bot(interpreter_url="http://127.0.0.1:9/v1", interpreter_timeout_s=5)
async def test_when_the_interpreter_model_fails_the_rules_answer_and_the_result_says_so(world):
    # Port 9 (discard) has no server here: the connection is refused at once, as a model server that is down.
    first = await started(world)
    sent = await world.alice.send(world.channel, "make it green", reply_to=first)
    result = answer_to(world, sent)
    record = await world.store.get_by_message(result.id)
    assert record.prompt == "a green circle on a blue background" and record.seed == 7
    assert "the interpreter model failed" in record.turn_reading["fallback"]
    assert "read by the built-in rules: the interpreter model was not usable" in message_text(result)


@pytest.mark.parametrize("in_dm", [False, True])
async def test_a_turn_queued_when_the_bot_restarts_is_posted_after_it(world, in_dm):
    world.factory.hold_queue()
    channel = world.alice.user.dm_channel if in_dm else world.channel
    if in_dm:
        sent = await world.alice.user.send_dm(f"{START} --seed 5")
    else:
        sent = await mention(world, world.alice, f"{START} --seed 5")
    assert "Queued" in message_text(answer_to(world, sent, channel))
    await world.restart()
    world.factory.release_queue()
    await world.env.settle()
    record = await world.store.get((await world.store.turns.get(sent.id)).generation_id)
    assert record.images and record.message_id is not None and record.delivery_failure is None
    [posted] = [message for message in bot_messages(world, channel) if message.id == record.message_id]
    assert result_title(posted) == START


async def test_a_mention_with_a_picture_starts_from_that_picture(world):
    from PIL import Image

    from bot_helpers import png_of

    picture = png_of(Image.new("RGB", (64, 64), (200, 30, 30)))
    sent = await mention(world, world.alice, START, attachments=[("start.png", picture)])
    await world.env.settle()
    result = answer_to(world, sent)
    record = await world.store.get_by_message(result.id)
    assert record.has_init_image and record.kind is GenerationKind.IMAGINE and record.prompt == START
    assert await world.store.read_init_image(record.id) == picture
    assert "→ new picture: a red circle on a blue background · from your picture" in message_text(result)
