"""The playground's message box talks to the bot: a mention makes a picture, a reply to it changes it
(what a member does on the Preview page, sent through the page's own action API)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest_asyncio
from bot_helpers import custom_ids, message_text, result_title
from test_conversation import answer_to
from test_playground import SAFETY_S, BrowserPage, playground_settings

from generation.queue.assembly import build_service
from playground.simulator import open_world
from generation.queue import PLAIN


@pytest_asyncio.fixture
async def playground(tmp_path):
    settings = playground_settings(tmp_path)
    world = await open_world(settings, service=build_service(settings, PLAIN), settle_timeout=5)
    try:
        yield world
    finally:
        await world.close()


async def rendered(world: Any, status: Any) -> None:
    """Wait for the job behind a status line (its Cancel button names it) to render; then its delivery."""
    ids = [m.group(1) for i in custom_ids(status) if (m := re.fullmatch(r"gen:cancel:(\d+)", i))]
    job = world.service.get(ids[0]) if ids else None
    if job is not None:
        await asyncio.wait_for(job.result(), SAFETY_S)
    await world.env.settle()


async def send(page: BrowserPage, preview: Any, content: str, sequence: int, reply_to: int | None = None) -> dict:
    """Type `content` in the message box (replying to `reply_to`) and press Enter, as the page's script does."""
    await preview.refresh()
    state = await page.state()
    body = {"protocol_version": 3, "sequence": sequence, "request_id": f"send-{sequence}",
            "generation": state["context"]["generation"], "bot_generation": state["botGeneration"],
            "published_revision": state["publishedRevision"], "kind": "send_message", "content": content,
            "reply_to_id": str(reply_to) if reply_to is not None else None}
    async with page.http.post(f"{page.origin}/api/action", json=body, headers=page.headers) as response:
        answer = await response.json()
    assert not answer["rejected"], answer
    return answer


def sent_message(world: Any, answer: dict) -> Any:
    [outcome] = answer["outcomes"] if "outcomes" in answer else answer["result"]["outcomes"]
    return world.env.backend.get_message(world.channel.id, int(outcome["messageId"]))


async def test_the_message_box_mentions_and_replies_make_and_change_pictures(playground):
    world = playground
    async with world.env.preview(world.channel, viewers=[world.alice], layout="channel", port=0) as preview:
        async with BrowserPage(preview.url) as page:
            first = sent_message(world, await send(page, preview, f"{world.bot.user.mention} a red circle on a "
                                                              "blue background --seed 4", 1))
            status = answer_to(world, first)
            await rendered(world, status)
            result = answer_to(world, first)
            assert result_title(result) == "a red circle on a blue background"
            second = sent_message(world, await send(page, preview, "make it green", 2, reply_to=result.id))
            await rendered(world, answer_to(world, second))
            changed = answer_to(world, second)
            assert result_title(changed) == "a green circle on a blue background"
            assert "seed 4 kept" in message_text(changed)
