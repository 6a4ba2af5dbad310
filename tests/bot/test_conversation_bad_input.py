"""Conversation turns that must not make a picture, the server's rules on turns, and exactly-once handling:
each bad input gets one short answer and leaves nothing queued and nothing in /history."""

from __future__ import annotations

import pytest
from bot_helpers import message_text
from simcord.backend.models.message import AllowedMentions
from test_conversation import START, answer_to, bot_messages, mention, started
from test_server_config import configure, make_admin

from storage import GenerationKind, TurnState


async def history_size(world) -> int:
    return await world.store.count_history(world.alice.id) + await world.store.count_history(world.bob.id)


async def refused(world, sent, channel=None) -> str:
    """The bot's one answer to `sent`, which queued nothing (its turn is answered, with the reason)."""
    reply = answer_to(world, sent, channel)
    turn = await world.store.turns.get(sent.id)
    assert turn.state is TurnState.ANSWERED and turn.generation_id is None and turn.reason, turn
    assert reply.content.startswith("✋ "), reply.content
    return reply.content


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("words", "attachments", "expected"), [
    ("", 0, "no words to read"),
    ("a red circle", 10, "10 attachments"),
])
async def test_a_mention_that_cannot_be_a_request_is_answered_and_queues_nothing(world, words, attachments,
                                                                                   expected):
    files = [(f"p{index}.png", b"\x89PNG") for index in range(attachments)]
    sent = await mention(world, world.alice, words, attachments=files)
    await world.env.settle()
    assert expected in await refused(world, sent)
    assert await history_size(world) == 0


async def test_a_4000_character_message_is_answered_and_queues_nothing(world):
    # Members with Nitro may send 4,000 characters; SimCord's member client stops at 2,000, so the long
    # message is put in place and delivered as the gateway would.
    backend = world.env.backend
    stored = backend.create_message(world.channel.id, world.alice.id, world.env.bot.user.mention, broadcast=False)
    stored.content = f"{world.env.bot.user.mention} " + ("a red circle " * 400)[:3999] + "."
    backend.announce_message_create(stored)
    await world.env.settle()
    assert "4,000 characters" in await refused(world, stored)
    assert await history_size(world) == 0


@pytest.mark.parametrize(("words", "expected"), [
    ("make it a dog", "can't draw “dog”"),
    ("thanks!", "Nothing to change"),
    ("what is this?", "I only make pictures"),
])
async def test_a_reply_the_model_cannot_do_is_answered_and_queues_nothing(world, words, expected):
    first = await started(world)
    sent = await world.alice.send(world.channel, words, reply_to=first)
    assert expected in await refused(world, sent)
    assert await history_size(world) == 1


async def test_a_reply_to_a_message_that_is_not_a_result(world):
    chatter = await world.bob.send(world.channel, "look at this")
    sent = await mention(world, world.alice, "make it green", reply_to=chatter)
    assert "not one of my pictures" in await refused(world, sent)
    not_a_picture = answer_to(world, sent)  # the bot's own answer is no result either
    again = await world.alice.send(world.channel, "make it green", reply_to=not_a_picture)
    assert "not one of my pictures" in await refused(world, again)
    assert await history_size(world) == 0


async def test_a_reply_to_a_deleted_result(world):
    first = await started(world)
    record = await world.store.get_by_message(first.id)
    await world.store.delete_generation(record.id)
    sent = await world.alice.send(world.channel, "make it green", reply_to=first)
    assert f"#{record.id} was deleted" in await refused(world, sent)
    assert await history_size(world) == 0


@pytest.mark.bot(share_results=False)
async def test_a_reply_to_someone_elses_result_when_results_are_not_shared(world):
    first = await started(world)
    sent = await world.bob.send(world.channel, "make it green", reply_to=first)
    assert "only its owner can change it" in await refused(world, sent)
    assert await world.store.count_history(world.bob.id) == 0


async def test_others_may_continue_a_shared_result_and_the_new_picture_is_theirs(world):
    first = await started(world)
    sent = await world.bob.send(world.channel, "make it green", reply_to=first)
    record = await world.store.get_by_message(answer_to(world, sent).id)
    assert record.owner_id == world.bob.id and record.prompt == "a green circle on a blue background"


async def test_an_ambiguous_turn_says_which_reading_was_chosen(world):
    first = await started(world, words=f"{START} --ar 2:1 --seed 5")
    sent = await world.alice.send(world.channel, "make it square", reply_to=first)
    result = answer_to(world, sent)
    record = await world.store.get_by_message(result.id)
    assert record.kind is GenerationKind.SQUARE
    assert "for the shape, say “a square instead”" in record.turn_reading["reading"]
    assert "“make it square” → Make Square (Make Square (the picture); for the shape, say “a square instead”)" in (
        message_text(result))


# ---------------------------------------------------------------- the server's rules


async def test_banned_words_are_checked_on_the_words_and_on_the_resulting_prompt(world):
    first = await started(world)
    await configure(world, make_admin(world), "banned_words", add="green")
    said = await world.alice.send(world.channel, "make it green", reply_to=first)
    assert "does not allow" in await refused(world, said)
    await configure(world, make_admin(world, "dave"), "banned_words", add="triangle")
    # "make it a triangle" names the banned shape; "the third shape" would not, but its prompt does: the
    # resulting prompt is checked as /imagine's is.
    resulting = await world.alice.send(world.channel, "a triangle instead of the circle", reply_to=first)
    assert "does not allow" in await refused(world, resulting)
    assert await history_size(world) == 1


async def test_allowed_channels_hold_for_turns_and_threads_under_an_allowed_channel_work(world):
    first = await started(world)
    await world.alice.click(first, label="Continue")
    [thread] = world.channel.threads
    elsewhere = world.guild.create_text_channel("elsewhere")
    await configure(world, make_admin(world), "channels", add=world.channel)
    sent = await mention(world, world.alice, START, channel=elsewhere)
    await world.env.settle()
    assert "only in" in await refused(world, sent, elsewhere)
    in_thread = await mention(world, world.alice, "make it green", channel=thread)
    record = await world.store.get_by_message(answer_to(world, in_thread, thread).id)
    assert record.prompt == "a green circle on a blue background"


async def test_the_daily_quota_counts_turns(world):
    first = await started(world)
    await configure(world, make_admin(world), "limits", daily_quota=1)
    sent = await world.alice.send(world.channel, "make it green", reply_to=first)
    assert "You have used 1 of this server's 1 images for today" in await refused(world, sent)


async def test_an_instruction_editing_model_gets_the_parent_picture_and_the_words(world):
    from bot.turns import order_for
    from generation.conversation import Interpretation, Kind

    first = await started(world)
    parent = await world.store.get_by_message(first.id)
    reading = Interpretation(Kind.PROMPT, prompt_edit="instruction", instruction="make it night",
                             changes={"prompt": "make it night"})
    order = await order_for(world.bot.services, parent, reading)
    assert order.kind is GenerationKind.EDIT and order.parent is parent
    assert order.fields["prompt"] == "make it night" and order.fields["seed"] == parent.images[0].seed
    assert order.fields["init_image"] == await world.store.read_image(parent.images[0])


# ---------------------------------------------------------------- exactly once


async def test_the_same_message_delivered_twice_is_processed_once(world):
    sent = await mention(world, world.alice, START)
    await world.env.settle()
    backend = world.env.backend
    backend.announce_message_create(backend.messages[world.channel.id][sent.id])  # the gateway sends it again
    await world.env.settle()
    assert await history_size(world) == 1
    assert len([m for m in bot_messages(world) if m.reference and m.reference.message_id == sent.id]) == 1


async def test_a_turn_claimed_by_a_process_that_died_is_finished_at_start_up(world):
    backend = world.env.backend
    words = f"{world.env.bot.user.mention} {START} --seed 11"
    # The message reached a bot that claimed it and died before recording anything.
    stored = backend.create_message(world.channel.id, world.alice.id, words, broadcast=False,
                                    allowed_mentions=AllowedMentions())
    assert await world.store.turns.claim_message(stored.id, channel_id=world.channel.id, author_id=world.alice.id)
    await world.restart()
    await world.env.settle()
    record = await world.store.get((await world.store.turns.get(stored.id)).generation_id)
    assert record.seed == 11 and record.prompt == START and record.images
    assert len([m for m in bot_messages(world) if m.reference and m.reference.message_id == stored.id]) == 1
