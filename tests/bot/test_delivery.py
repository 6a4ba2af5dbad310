"""Getting a result to the user: late results, failing uploads, oversized images, restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from bot_helpers import attachment_bytes, embed_field, image_of, message_text, png_of, result_footer, result_title
from PIL import Image

from generation.queue.assembly import build_service
from generation import RenderedImage, RenderResult
from storage import GenerationKind, ImageInput

# The retries' count, not their real-time spacing (bot.delivery.RETRY_DELAYS_S: 2 s asleep), is what these
# tests check.
SHORT_RETRY_DELAYS_S = (0.01, 0.01)

TOKEN_LIFETIME_S = 15 * 60


class LateJob:
    """A job whose result reaches the bot `delay_s` (virtual) seconds after the render: a long queue."""

    def __init__(self, job: Any, delay_s: float) -> None:
        self._job = job
        self._delay_s = delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    async def result(self) -> RenderResult:
        await asyncio.sleep(self._delay_s)
        return await self._job.result()


class LateResults:
    """The real GenerationService, with every result held back `delay_s` seconds."""

    def __init__(self, service: Any, delay_s: float) -> None:
        self._service = service
        self._delay_s = delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def submit(self, *args: Any, **kwargs: Any) -> LateJob:
        return LateJob(self._service.submit(*args, **kwargs), self._delay_s)


def late_results(first_bot_delay_s: float):
    """Service factory: the first bot built gets late results; bots built after a restart do not."""
    built = []

    def factory(settings: Any, waiter: Any) -> Any:
        delay = first_bot_delay_s if not built else 0.0
        built.append(delay)
        return LateResults(build_service(settings, waiter), delay)

    return factory


class HugeNoiseRenderer:
    """Wraps the real renderer but returns a 3300×3300 noise image: a PNG of about 31 MiB."""

    SIDE = 3300

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)

    def render_batch(self, requests: list[Any], **options: Any) -> list[RenderResult]:
        return [self.render(request) for request in requests]

    def render(self, request: Any) -> RenderResult:
        pixels = np.random.default_rng(request.seed).integers(0, 256, (self.SIDE, self.SIDE, 3), dtype=np.uint8)
        return RenderResult(request, [RenderedImage(Image.fromarray(pixels), request.seed)], 0.5)


def huge_noise_service(settings: Any, waiter: Any) -> Any:
    service = build_service(settings, waiter)
    service.renderer = HugeNoiseRenderer(service.renderer)
    return service


def _original_edits(world) -> list[Any]:
    return [entry for entry in world.env.http_requests
            if entry.method == "PATCH" and entry.path.endswith("/messages/@original")]


@pytest.mark.bot(service=late_results(TOKEN_LIFETIME_S + 60))
async def test_a_result_ready_after_the_token_expired_is_posted_in_the_channel(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=12, steps=4)
    status = result.response
    assert not status.attachments and "a red circle" in status.content  # still a status line

    await world.env.advance_time(TOKEN_LIFETIME_S + 60)

    posted = world.channel.last_message
    assert posted.id != status.id and posted.attachments
    assert world.alice.mention in message_text(posted)  # a normal message, so the owner is pinged
    assert embed_field(posted, "Seed") == "12"
    record = await world.store.get_by_message(posted.id)
    assert record is not None and record.seed == 12 and record.delivery_failure is None


async def test_an_upload_failing_with_503_is_retried_and_arrives(world):
    grid = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=3, count=2,
                                    steps=4)).response
    world.bot.runner.delivery.retry_delays_s = SHORT_RETRY_DELAYS_S
    before = len(_original_edits(world))
    world.env.inject_error("PATCH", f"/webhooks/{world.bot.application_id}/*/messages/@original",
                           status=503, message="Service Unavailable", times=2)

    upscaled = await world.alice.click(grid, label="U1")

    assert upscaled.response.attachments
    assert embed_field(upscaled.response, "Seed") == "3"
    assert len(_original_edits(world)) - before == 3  # two refused, the third accepted


async def test_an_upload_that_keeps_failing_stays_in_history_with_its_reason(world):
    grid = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=3, count=2,
                                    steps=4)).response
    world.bot.runner.delivery.retry_delays_s = SHORT_RETRY_DELAYS_S
    world.env.inject_error("PATCH", f"/webhooks/{world.bot.application_id}/*/messages/@original",
                           status=503, message="Service Unavailable", times=None)

    upscaled = await world.alice.click(grid, label="U1")

    assert "Discord refused the upload" in upscaled.response.content
    parent = await world.store.get_by_message(grid.id)
    child = (await world.store.lineage(parent.id)).children[0]
    assert child.kind is GenerationKind.PICK and child.images
    assert child.message_id is None and "503" in child.delivery_failure

    listing = (await world.alice.slash(world.channel, "history")).response
    assert f"**#{child.id}** · pick of #{parent.id}" in listing.embeds[0].description
    assert "✅ done, not posted: Discord refused the upload: 503" in listing.embeds[0].description
    shown = await world.alice.slash(world.channel, "show", id=child.id)
    assert shown.response.attachments  # still there to post once Discord accepts it


@pytest.mark.bot(service=huge_noise_service)
@pytest.mark.simcord(settle_timeout=240.0)
async def test_a_result_over_the_upload_limit_is_shrunk_and_the_full_png_kept(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="a static square", seed=1, steps=4)

    message = result.response
    attachment = message.attachments[0]
    data = await attachment.read()
    limit = 25 * 1024 * 1024  # the interaction's attachment_size_limit in SimCord
    assert attachment.filename.endswith(".jpg") and len(data) <= limit
    assert image_of(data).size[0] > 1000  # still a big picture, not a thumbnail
    assert "JPEG" in result_footer(message)
    record = await world.store.get_by_message(message.id)
    stored = await world.store.read_image(record.images[0])
    assert len(stored) > 30 * 1024 * 1024 and stored.startswith(b"\x89PNG")


async def test_a_result_rendered_but_never_posted_is_posted_after_a_restart(world):
    # What a crash between rendering and posting leaves behind: a finished, undelivered generation.
    store = world.store
    record = await store.create_generation(
        owner_id=world.alice.id, guild_id=world.guild.id, channel_id=world.channel.id,
        kind=GenerationKind.IMAGINE, parent_id=None,
        params={"prompt": "a blue square", "width": 64, "height": 64, "num_inference_steps": 4,
                "guidance_scale": 5.0, "seed": 8, "sampler": "DPM++ 2M", "count": 1, "model": "tinyshapes"})
    await store.mark_done(record.id, [ImageInput(0, png_of(Image.new("RGB", (64, 64), (0, 0, 200))), 8)], 0.4)

    await world.restart()

    posted = world.channel.last_message
    assert posted.attachments and world.alice.mention in message_text(posted)
    assert result_title(posted) == "a blue square" and f"#{record.id}" in result_footer(posted)
    assert (await world.store.get(record.id)).message_id == posted.id


@pytest.mark.bot(service=late_results(TOKEN_LIFETIME_S))
async def test_a_job_interrupted_by_a_restart_is_rendered_again_and_posted(world):
    status = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=21, steps=2)).response
    assert not status.attachments

    await world.restart()  # the first bot never got its result; the new one re-renders the job

    posted = world.channel.last_message
    assert posted.attachments and embed_field(posted, "Seed") == "21"
    record = await world.store.get_by_message(posted.id)
    assert record.attempts == 2
    png = await attachment_bytes(posted)
    assert "Seed: 21" in image_of(png).info["parameters"]


async def test_an_unexpected_error_while_posting_is_told_to_the_user_and_kept_in_history(world, monkeypatch):
    from bot import presentation

    def broken_encoder(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(presentation, "encode_result", broken_encoder)
    result = await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=4, steps=4)

    told = result.followups[-1] if result.followups else result.response
    assert told.ephemeral
    assert ("Generation #1 is done but could not be posted here (internal error while posting: RuntimeError)"
            in told.content)
    assert "/show id:1" in told.content
    record = await world.store.get(1)
    assert record.images and record.message_id is None and "RuntimeError" in record.delivery_failure

    monkeypatch.undo()
    again = await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=4, steps=4)
    assert again.response.attachments
