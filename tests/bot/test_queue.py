"""/queue (and /show of a job still in the queue) as a member sees them, through SimCord.

Every actor call waits until the bot has finished all its work, so jobs cannot be left waiting
between two /imagine calls. Instead the test puts several jobs in the real render queue at once
(recorded in the Store and submitted under the generation id, as the runner does), waits until the
first is rendering, and then asks: the command is answered while the others are still queued.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from generation import GenerationRequest
from storage import GenerationKind


async def queue_jobs(world, jobs: list[tuple[object, str, int]]) -> list[int]:
    """Record and queue (member, prompt, steps) jobs in one go; returns their generation ids."""
    records = []
    for owner, prompt, _steps in jobs:
        records.append(await world.store.create_generation(
            owner_id=owner.id, guild_id=world.guild.id, channel_id=world.channel.id,
            kind=GenerationKind.IMAGINE, parent_id=None, params={"prompt": prompt}))
    service = world.bot.queue.scheduler  # type: ignore[attr-defined]  # the in-process queue's
    first_started = asyncio.Event()

    async def mark_started() -> None:
        first_started.set()

    # Submitted back to back, so the dispatcher sees all of them before it picks the first.
    for index, ((owner, prompt, steps), record) in enumerate(zip(jobs, records)):
        request = service.prepare(GenerationRequest(prompt=prompt, num_inference_steps=steps, seed=1))
        service.submit(request, owner=str(owner.id), key=str(record.id),
                       before_start=mark_started if index == 0 else None)
    await first_started.wait()  # the worker has taken the first job: it is rendering
    return [record.id for record in records]


def your_jobs(message) -> list[str]:
    description = message.embeds[0].description
    assert "**Your jobs**" in description, description
    return description.split("**Your jobs**\n", 1)[1].split("\n")


def eta_seconds(line: str) -> int:
    minutes = re.search(r"done in about (?:(\d+) min ?)?(?:(\d+) s)?", line)
    assert minutes, line
    return int(minutes.group(1) or 0) * 60 + int(minutes.group(2) or 0)


@pytest.mark.bot(batch_images=1)  # positions of single-image calls
async def test_queue_shows_your_jobs_with_positions_and_eta(world):
    alice, bob = world.alice, world.bob
    first, bobs, second = await queue_jobs(world, [
        (alice, "a long red render", 10),
        (bob, "bob's blue circle", 4),
        (alice, "a small green square", 4),
    ])

    result = await alice.slash(world.channel, "queue")
    message = result.response
    assert message.ephemeral
    assert message.embeds[0].description.startswith("3 job(s) in the queue: 1 rendering, 2 waiting.")
    # Turns alternate between members, so bob's job goes before alice's second one.
    rendering, waiting = your_jobs(message)
    assert rendering.startswith(f"**#{first}** · 🎨 rendering now, done in about ")
    assert rendering.endswith(" — a long red render")
    assert waiting.startswith(f"**#{second}** · ⏳ position 2, done in about ")
    assert waiting.endswith(" — a small green square")
    assert f"#{bobs}" not in message.embeds[0].description, "other members' jobs are counted, not listed"
    assert eta_seconds(waiting) >= eta_seconds(rendering)

    # By the time the command returns the queue has drained (the test waits for the bot's work).
    later = await alice.slash(world.channel, "queue")
    assert later.response.embeds[0].description.startswith("The render queue is empty.")
    assert "You have no jobs in the queue." in later.response.embeds[0].description


async def test_show_of_a_queued_generation_says_where_it_is(world):
    first, second = await queue_jobs(world, [
        (world.alice, "a long red render", 10),
        (world.alice, "a small green square", 4),
    ])

    result = await world.alice.slash(world.channel, "show", id=second)
    assert result.response.ephemeral
    text = result.response.content
    assert text.startswith(f"Generation #{second} is queued: position 1 (about ")
    assert text.endswith("s to go). It is posted when it's done; /queue shows your jobs.")
