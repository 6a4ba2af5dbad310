"""The playground shows the bot live: actions end at "Queued", renders are external, the page is pushed.

A gated renderer stands in for the model: each step waits until the test opens it, so "the render is
still running" is a fact, not a timing. Time is SimCord's virtual clock or a counter; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import PIL.Image
import pytest
import pytest_asyncio

from generation.queue.assembly import build_service
from bot.lock import AlreadyRunning, InstanceLock
from playground.simulator import BOT_NAME, LiveSync, catch_up_clock, lock_path, open_world, run_playground
from bot.settings import Settings
from generation.request import Progress, RenderCancelled, RenderedImage, RenderResult

from bot_helpers import button_labels, custom_ids

STEPS = 4
SAFETY_S = 60  # only a hung test ever waits this long


class GatedRenderer:
    """The real renderer's files (tokenizer, size) with a fake render that runs one step per `allow()`."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer
        self._permits = threading.Semaphore(0)
        self.started = threading.Event()
        self.steps_shown = threading.Semaphore(0)  # one release per step handed to the event loop
        self.renders_ended = threading.Semaphore(0)  # one release per render returned or raised
        self.ended = 0
        self.rendered: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)

    def allow(self, steps: int = 1) -> None:
        for _ in range(steps):
            self._permits.release()

    def render_batch(self, requests: list[Any], *, on_progress: Any = None, is_cancelled: Any = None,
                     **_: Any) -> list[RenderResult]:
        """The service's batch entry point (it batches when the wrapped renderer can): one job at a time."""
        return [self.render(request, is_cancelled=is_cancelled,
                            on_progress=None if on_progress is None else partial(on_progress, index))
                for index, request in enumerate(requests)]

    def render(self, request: Any, *, on_progress: Any = None, is_cancelled: Any = None) -> RenderResult:
        self.started.set()
        try:
            for step in range(1, STEPS + 1):
                while not self._permits.acquire(timeout=0.05):  # checks for Cancel while held
                    if is_cancelled is not None and is_cancelled():
                        raise RenderCancelled()
                if is_cancelled is not None and is_cancelled():
                    raise RenderCancelled()
                if on_progress is not None:
                    on_progress(Progress(step, STEPS, PIL.Image.new("RGB", (16, 16), (step * 60, 0, 0))))
                self.steps_shown.release()
            self.rendered.append(request.prompt)
            image = PIL.Image.new("RGB", (request.width, request.height), (200, 30, 30))
            return RenderResult(request, [RenderedImage(image, seed) for seed in request.image_seeds()], 0.1)
        finally:
            self.ended += 1
            self.renders_ended.release()


def playground_settings(tmp_path: Path, **changes: Any) -> Settings:
    values = {"data_dir": tmp_path / "data", "device": "cpu", "dtype": "float32", "cpu_threads": 1,
              "default_steps": STEPS, "log_level": "DEBUG", "playground_port": 0, **changes}
    return Settings(_env_file=None, **values)


def gated_service(settings: Settings) -> tuple[Any, GatedRenderer]:
    service = build_service(settings)
    renderer = GatedRenderer(service.renderer)
    service.renderer = renderer
    return service, renderer


async def wait_thread_event(event: threading.Event | threading.Semaphore) -> None:
    wait = event.wait if isinstance(event, threading.Event) else event.acquire
    assert await asyncio.to_thread(wait, timeout=SAFETY_S), "the render thread never got there"


@pytest_asyncio.fixture
async def playground(tmp_path: Path):
    settings = playground_settings(tmp_path)
    service, renderer = gated_service(settings)
    world = await open_world(settings, service=service, settle_timeout=5)
    try:
        yield world, renderer
    finally:
        renderer.allow(100)
        await world.close()


async def step_shown(world: Any, renderer: GatedRenderer) -> None:
    """Open one render step and let the bot show it (its status edit is bot-owned work)."""
    renderer.allow(1)
    await wait_thread_event(renderer.steps_shown)
    await world.env.advance_time(1.0)  # past the status line's one-edit-a-second throttle (virtual)
    await world.env.settle()


def job_of(world: Any, status: Any) -> Any:
    """The render-queue job behind a status message (its Cancel button carries the generation id)."""
    ids = [m.group(1) for i in custom_ids(status) if (m := re.fullmatch(r"gen:cancel:(\d+)", i))]
    assert ids, f"no Cancel button on {status!r}"
    job = world.service.get(ids[0])
    assert job is not None, "the job is no longer queued or running"
    return job


async def render_done(world: Any, renderer: GatedRenderer, job: Any) -> None:
    """Let the job's render finish; then the bot (woken from its external wait) delivers the result."""
    renderer.allow(100)
    try:
        await asyncio.wait_for(job.result(), SAFETY_S)
    except Exception:  # noqa: BLE001 - a cancelled or failed job is done too
        pass
    await world.env.settle()


async def test_an_action_completes_at_queued_while_its_render_runs_outside(playground):
    world, renderer = playground
    result = await world.alice.slash(world.channel, "imagine", prompt="a red circle on a blue background")

    # The action is over, the render is not: it waits for its first step (no settle window involved).
    status = result.response
    assert "a red circle on a blue background" in status.content
    assert re.search(r"Queued|Starting", status.content), status.content
    assert "Cancel" in button_labels(status)
    job = job_of(world, status)
    await wait_thread_event(renderer.started)
    assert renderer.ended == 0

    await step_shown(world, renderer)
    assert f"Rendering step 1/{STEPS}" in status.content
    assert [a.filename for a in status.attachments] == ["preview.png"]

    await step_shown(world, renderer)
    assert f"Rendering step 2/{STEPS}" in status.content

    await render_done(world, renderer, job)
    assert "Rendering" not in status.content
    assert status.attachments and status.attachments[0].filename != "preview.png"
    assert "Reroll" in button_labels(status) and "Cancel" not in button_labels(status)


async def test_two_members_queue_at_once_and_one_cancels(playground):
    world, renderer = playground
    alice = await world.alice.slash(world.channel, "imagine", prompt="a red circle")
    alice_job = job_of(world, alice.response)
    await wait_thread_event(renderer.started)  # alice's job holds the worker
    bob = await world.bob.slash(world.channel, "imagine", prompt="a blue square")
    bob_second = await world.bob.slash(world.channel, "imagine", prompt="a green triangle")
    bob_second_job = job_of(world, bob_second.response)
    assert "Queued — position 1" in bob.response.content
    assert "Queued — position 2" in bob_second.response.content

    refused = await world.alice.click(bob.response.message, label="Cancel")
    assert refused.ephemeral  # not hers
    cancelled = await world.bob.click(bob.response.message, label="Cancel")
    assert cancelled.acknowledged
    await world.env.settle()
    assert "Cancelled" in bob.response.content

    await render_done(world, renderer, alice_job)
    await render_done(world, renderer, bob_second_job)
    assert renderer.rendered == ["a red circle", "a green triangle"]
    assert alice.response.attachments and bob_second.response.attachments
    assert "Reroll" in button_labels(alice.response)


async def test_the_bot_is_imagine_bot_and_its_clock_is_the_wall_clock(tmp_path):
    settings = playground_settings(tmp_path)
    service, renderer = gated_service(settings)
    before = datetime.now(UTC)
    world = await open_world(settings, service=service, settle_timeout=5)
    try:
        after = datetime.now(UTC)
        assert before <= world.env.now() <= after
        assert world.bot.user.name == BOT_NAME

        result = await world.alice.slash(world.channel, "imagine", prompt="a red circle")
        assert result.response.message.author.name == BOT_NAME
        # /history shows the stored (real) time relative to the page's clock: now they agree.
        await catch_up_clock(world.env)
        history = await world.alice.slash(world.channel, "history")
        stamps = [int(s) for s in re.findall(r"<t:(\d+):R>", _text(history.response))]
        assert stamps and all(after.timestamp() - 1 <= s <= world.env.now().timestamp() for s in stamps)
    finally:
        renderer.allow(100)
        await world.close()


def _text(message: Any) -> str:
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.title or "", embed.description or ""]
        parts += [f"{field.name} {field.value}" for field in embed.fields]
    parts += _text_displays(message.components)  # a gallery result's text (Components V2)
    return "\n".join(parts)


def _text_displays(components: Any) -> list[str]:
    found = []
    for component in components or []:
        component = component if isinstance(component, dict) else getattr(component, "to_dict", lambda: {})()
        if component.get("type") == 10:
            found.append(component.get("content", ""))
        found += _text_displays(component.get("components"))
    return found


@asynccontextmanager
async def live_page(world: Any, viewers: list[Any], now: list[float] | None = None, *,
                    remember_viewer: bool = False) -> AsyncIterator[tuple[Any, LiveSync, BrowserPage]]:
    """A channel preview for `viewers`, its LiveSync (page actions held; on the counter clock `now[0]` when
    given) and a browser page open on it."""
    async with world.env.preview(world.channel, viewers=viewers, layout="channel", port=0) as preview:
        sync = LiveSync(world.env, preview) if now is None else LiveSync(world.env, preview, monotonic=lambda: now[0])
        sync.hold_page_actions()
        if remember_viewer:
            sync.remember_viewer()
        async with BrowserPage(preview.url) as page:
            yield preview, sync, page


async def test_the_page_is_republished_when_the_bot_changes_something(playground):
    world, renderer = playground
    now = [0.0]
    async with live_page(world, [world.alice, world.bob], now) as (_, sync, page):
        await pushed_updates(world, renderer, sync, page, now)


async def pushed_updates(world: Any, renderer: GatedRenderer, sync: LiveSync, page: BrowserPage,
                         now: list[float]) -> None:
    assert not await sync.step()  # nothing happened

    result = await world.alice.slash(world.channel, "imagine", prompt="a red circle")
    job = job_of(world, result.response)
    assert await sync.step()
    assert "Queued" in await page.text() or "Starting" in await page.text()
    assert not await sync.step()  # nothing new

    renderer.allow(1)
    await wait_thread_event(renderer.steps_shown)
    await world.env.advance_time(1.0)
    await world.env.settle()
    assert not await sync.step()  # at most one publication a second (counter clock)
    now[0] += sync.refresh_s
    assert await sync.step()
    assert f"Rendering step 1/{STEPS}" in await page.text()

    await render_done(world, renderer, job)
    now[0] += sync.refresh_s
    assert await sync.step()
    assert "Rendering" not in await page.text()


async def test_an_action_made_stale_only_by_pushed_updates_still_counts(playground):
    world, renderer = playground
    now = [0.0]
    async with live_page(world, [world.alice, world.bob], now) as (preview, sync, page):
        result = await world.alice.slash(world.channel, "imagine", prompt="a red circle")
        job = job_of(world, result.response)
        assert await sync.step()
        shown = await page.state()  # what alice's page shows: "Queued" with Cancel

        renderer.allow(1)  # a progress edit, pushed before the page reads it again
        await wait_thread_event(renderer.steps_shown)
        await world.env.advance_time(1.0)
        await world.env.settle()
        now[0] += sync.refresh_s
        assert await sync.step()
        assert (await page.state())["publishedRevision"] > shown["publishedRevision"]

        receipt = await page.click(shown, result.response.id, "Cancel", sequence=1)
        assert not receipt.get("rejected"), receipt
        await render_done(world, renderer, job)
        assert "Cancelled" in result.response.content

        # Published by someone else (not a push of the bot's changes): SimCord's answer stands.
        shown = await page.state()
        await preview.refresh()
        receipt = await page.click(shown, result.response.id, "Cancel", sequence=2)
        assert receipt.get("rejected") and "stale-revision" in str(receipt.get("diagnostics")), receipt


class BrowserPage:
    """What the page's own script does: open a context, then read the published state."""

    def __init__(self, url: str) -> None:
        self.origin, self.capability = url.split("/#")
        self.context: str | None = None

    async def __aenter__(self) -> BrowserPage:
        self.http = aiohttp.ClientSession()
        try:
            await self.open()
        except BaseException:
            await self.http.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def open(self) -> None:
        async with self.http.post(f"{self.origin}/api/pages", json={},
                                  headers={"X-Simcord-Capability": self.capability}) as response:
            self.context = (await response.json())["context"]["id"]

    async def state(self) -> dict[str, Any]:
        async with self.http.get(f"{self.origin}/api/state", headers=self.headers) as response:
            return await response.json()

    @property
    def headers(self) -> dict[str, str]:
        assert self.context is not None
        return {"X-Simcord-Capability": self.capability, "X-Simcord-Context": self.context}

    async def text(self) -> str:
        state = await self.state()
        return "\n".join(str(message.get("content", "")) for message in state["messages"].values())

    async def click(self, state: dict[str, Any], message_id: int, label: str, sequence: int) -> dict[str, Any]:
        """Click `label` as the page showed it in `state` (its revision), like the page's script does."""
        message = state["messages"][str(message_id)]
        keys = [c["control_key"] for c in walk(message.get("components", [])) if c.get("label") == label]
        assert keys, f"no {label} button in {message.get('components')}"
        body = {"protocol_version": 3, "sequence": sequence, "request_id": f"click-{sequence}",
                "generation": state["context"]["generation"], "bot_generation": state["botGeneration"],
                "published_revision": state["publishedRevision"], "kind": "click", "control_key": keys[0],
                "target_id": str(message_id)}
        return await self.act(body)

    async def view_as(self, state: dict[str, Any], viewer_id: int, sequence: int) -> dict[str, Any]:
        """Pick a member in "Viewing as", as the page's script does."""
        body = {"protocol_version": 3, "sequence": sequence, "request_id": f"viewer-{sequence}",
                "generation": state["context"]["generation"], "bot_generation": state["botGeneration"],
                "published_revision": state["publishedRevision"], "kind": "viewer", "viewer_id": str(viewer_id)}
        return await self.act(body)

    async def focus(self, state: dict[str, Any], message_id: int, sequence: int) -> dict[str, Any]:
        """Go to a message (the page's search, or "Jump to message ID")."""
        body = {"protocol_version": 3, "sequence": sequence, "request_id": f"focus-{sequence}",
                "generation": state["context"]["generation"], "bot_generation": state["botGeneration"],
                "published_revision": state["publishedRevision"], "kind": "focus", "target_id": str(message_id)}
        return await self.act(body)

    async def act(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.origin}/api/action", json=body, headers=self.headers) as response:
            return await response.json()


async def test_a_reloaded_page_opens_as_the_member_chosen_last(playground):
    world, _ = playground
    async with live_page(world, [world.alice, world.bob, world.carol], remember_viewer=True) as (_, _, page):
        state = await page.state()
        assert state["viewerId"] == str(world.alice.id)  # SimCord's default: the first member
        receipt = await page.view_as(state, world.carol.id, sequence=1)
        assert not receipt.get("rejected"), receipt
        assert (await page.state())["viewerId"] == str(world.carol.id)
        await page.open()  # the browser's reload: a new page
        assert (await page.state())["viewerId"] == str(world.carol.id)


async def test_a_page_follows_the_bots_newest_message_unless_its_person_went_elsewhere(playground):
    world, renderer = playground
    now = [0.0]
    async with live_page(world, [world.alice, world.bob], now) as (_, sync, page):
        first = await world.alice.slash(world.channel, "imagine", prompt="a red circle")
        assert await sync.step()
        assert (await page.state())["targetId"] == str(first.response.id)  # the page scrolls to it
        second = await world.bob.slash(world.channel, "imagine", prompt="a blue square")
        now[0] += sync.refresh_s
        assert await sync.step()
        assert (await page.state())["targetId"] == str(second.response.id)

        receipt = await page.focus(await page.state(), first.response.id, sequence=1)  # "Jump to message"
        assert not receipt.get("rejected"), receipt
        third = await world.bob.slash(world.channel, "imagine", prompt="a green triangle")
        now[0] += sync.refresh_s
        assert await sync.step()
        assert (await page.state())["targetId"] == str(first.response.id)  # left where its person went
        assert str(third.response.id) != str(first.response.id)


async def test_carol_the_admin_can_use_config_and_alice_cannot(playground):
    world, _ = playground
    assert not any(name.startswith("config") for name in world.alice.available_commands(world.channel))
    assert "config banned_words" in world.carol.available_commands(world.channel)

    saved = await world.carol.slash(world.channel, "config banned_words", add="purple")
    assert "purple" in shown_text(saved.response)
    blocked = await world.alice.slash(world.channel, "imagine", prompt="a purple circle")
    assert blocked.ephemeral and "does not allow" in shown_text(blocked.response)


def shown_text(message: Any) -> str:
    """A message's words: its content and its embeds' (title, description, fields)."""
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.title or "", embed.description or ""] + [f"{f.name} {f.value}" for f in embed.fields]
    return "\n".join(parts)


def walk(components: list[dict[str, Any]]):
    for component in components:
        yield component
        yield from walk(component.get("components", []))


def test_a_second_playground_refuses_before_touching_its_data(tmp_path):
    settings = playground_settings(tmp_path)
    marker = settings.data_dir / "playground" / "keep-me"
    marker.parent.mkdir(parents=True)
    marker.write_text("first instance's data")
    with InstanceLock(lock_path(settings), what="An imagine-bot playground"):
        with pytest.raises(AlreadyRunning) as refusal:
            asyncio.run(run_playground(settings))
    assert marker.read_text() == "first instance's data"
    message = str(refusal.value)
    assert "\n" not in message and "already running" in message and str(os.getpid()) in message


def test_ctrl_c_during_a_render_stops_once_and_cleanly(tmp_path, caplog):
    from bot.__main__ import run_until_signalled

    settings = playground_settings(tmp_path)
    service, renderer = gated_service(settings)
    seen: dict[str, Any] = {}

    async def work(stop: asyncio.Event) -> str:
        up = asyncio.Event()

        def on_world(world: Any) -> None:
            seen["world"] = world
            up.set()

        playground = asyncio.create_task(run_playground(settings, stop=stop, service=service, on_world=on_world))
        await up.wait()
        world = seen["world"]
        result = await world.alice.slash(world.channel, "imagine", prompt="a red circle")
        assert "a red circle" in result.response.content
        renderer.allow(1)
        await wait_thread_event(renderer.steps_shown)  # mid-render
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in the terminal sends
        await playground
        return "stopped"

    with caplog.at_level("WARNING"):
        assert run_until_signalled(work) == "stopped"
    assert renderer.ended == 1 and renderer.rendered == []  # the render stopped at its next step
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


async def test_the_url_is_the_last_line_before_requests(tmp_path, capsys, caplog):
    settings = playground_settings(tmp_path)
    service, renderer = gated_service(settings)
    ready, urls, stop = asyncio.Event(), [], asyncio.Event()
    caplog.set_level("INFO")
    playground = asyncio.create_task(run_playground(settings, ready=ready, urls=urls, stop=stop, service=service))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({playground, waiter}, return_when=asyncio.FIRST_COMPLETED)
    assert ready.is_set(), playground.exception() if playground.done() else "not ready"
    records_at_ready = len(caplog.records)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"imagine-bot playground: {urls[0]}"
    await asyncio.sleep(0)  # one loop turn: nothing else is printed or logged while nobody asks
    assert capsys.readouterr().out == "" and len(caplog.records) == records_at_ready
    stop.set()
    await playground
    assert capsys.readouterr().out == ""
