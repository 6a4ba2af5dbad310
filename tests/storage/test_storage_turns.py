"""Conversation turns in storage (0009): the words and their reading on the generation, and a Discord
message claimed at most once, even when two gateways race for it (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage import GenerationKind, Store, TurnNotFound, TurnState
from storage_helpers import CHANNEL, GUILD, OWNER, request_params

MESSAGE = 1_300_000_000_000_000_001
READING = {"kind": "prompt", "prompt_edit": "replace", "changes": {"prompt": "a green circle on a blue background"},
           "summary": "→ a green circle on a blue background · seed 7 kept"}


async def test_a_message_is_claimed_once(store: Store) -> None:
    assert await store.turns.claim_message(MESSAGE, channel_id=CHANNEL, author_id=OWNER) is True
    assert await store.turns.claim_message(MESSAGE, channel_id=CHANNEL, author_id=OWNER) is False
    turn = await store.turns.get(MESSAGE)
    assert turn is not None and (turn.state, turn.channel_id, turn.author_id) == (TurnState.CLAIMED, CHANNEL, OWNER)
    assert await store.turns.get(MESSAGE + 1) is None


async def test_two_gateways_racing_for_one_message_get_one_claim(database_url: str | None, data_dir: Path) -> None:
    """Two Stores on one database (two processes' engines): the database's key decides, every time."""
    first = await Store.open(database_url, data_dir)
    second = await Store.open(database_url, data_dir)
    try:
        for message_id in range(MESSAGE, MESSAGE + 20):
            results = await asyncio.gather(
                first.turns.claim_message(message_id, channel_id=CHANNEL),
                second.turns.claim_message(message_id, channel_id=CHANNEL),
            )
            assert sorted(results) == [False, True], message_id
    finally:
        await first.close()
        await second.close()


async def test_a_turn_generation_keeps_the_words_and_reading_and_queues_the_turn(store: Store) -> None:
    assert await store.turns.claim_message(MESSAGE, channel_id=CHANNEL, author_id=OWNER)
    parent = await store.create_generation(owner_id=OWNER, guild_id=GUILD, channel_id=CHANNEL,
                                           kind=GenerationKind.IMAGINE, parent_id=None, params=request_params())
    child = await store.create_generation(
        owner_id=OWNER, guild_id=GUILD, channel_id=CHANNEL, kind=GenerationKind.EDIT, parent_id=parent.id,
        params=request_params(prompt="a green circle on a blue background"),
        turn_text="make it green", turn_reading=READING, turn_message_id=MESSAGE)
    assert (child.turn_text, child.turn_reading) == ("make it green", READING)
    stored = await store.get(child.id)
    assert stored is not None and (stored.turn_text, stored.turn_reading) == ("make it green", READING)
    assert parent.turn_text is None and parent.turn_reading is None
    turn = await store.turns.get(MESSAGE)
    assert turn is not None and (turn.state, turn.generation_id) == (TurnState.QUEUED, child.id)
    lineage = await store.lineage(child.id)
    assert [record.turn_text for record in lineage.ancestors] == [None]


async def test_a_generation_for_an_unclaimed_turn_is_not_recorded(store: Store) -> None:
    with pytest.raises(TurnNotFound):
        await store.create_generation(owner_id=OWNER, guild_id=GUILD, channel_id=CHANNEL, kind="imagine",
                                      parent_id=None, params=request_params(), turn_message_id=MESSAGE)
    assert await store.history(OWNER) == []


async def test_unfinished_turns_are_listed_for_the_restarted_bot(store: Store) -> None:
    for offset in range(3):
        assert await store.turns.claim_message(MESSAGE + offset, channel_id=CHANNEL)
    answered = await store.turns.finish(MESSAGE + 1, TurnState.ANSWERED)
    assert answered.state is TurnState.ANSWERED and answered.finished_at is not None
    failed = await store.turns.finish(MESSAGE + 2, "failed", reason="the parent result was deleted")
    assert failed.reason == "the parent result was deleted"
    assert [turn.message_id for turn in await store.turns.unfinished()] == [MESSAGE]
    with pytest.raises(TurnNotFound):
        await store.turns.finish(MESSAGE + 9, TurnState.ANSWERED)
    # A finished turn is still taken: a redelivered message is not processed again.
    assert await store.turns.claim_message(MESSAGE + 1, channel_id=CHANNEL) is False
