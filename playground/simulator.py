"""The offline playground: the real bot against SimCord's Discord-like Preview page on 127.0.0.1.

A server with one channel and three members is created: alice and bob, and carol, whose "admin" role
has Manage Server (so `/config` can be tried). The page's "Viewing as" switch lets a person act as
any of them; a reloaded page opens as the member chosen last. Nothing leaves this machine.

How the page stays live (SimCord 3.2 settles each page action: it waits for bot-owned work):
- **Rendering is external work.** The render service (its queue, dispatcher and worker thread) is
  built and started here, outside the bot, and handed to `create_bot(service=…)`, like a separate
  GPU worker. SimCord tracks only bot-owned tasks and executor jobs, and the bot's one wait on the
  queue (the runner's wait for a result) is declared with `env.external_wait` through the
  Waiter seam (generation.queue.Waiter). So a slash command or a click completes as soon as the
  bot has answered (the status line says Queued, with Cancel), whatever the render takes.
- **Updates are pushed.** The page polls its server twice a second but sees only published
  snapshots. `LiveSync` republishes (`preview.refresh()`) whenever the bot has made Discord requests
  since the last publication, at most once a second, so progress edits, previews, results and
  Cancel appear without the page's Refresh.
- **The clock is the wall clock.** SimCord's clock is virtual (it starts at 2026-01-01 and moves
  only when told). `LiveSync` advances it (`env.advance_time`) to the wall clock at start and every
  tick, so the times the bot stores (real time) agree with the page's, and the bot's own timers
  (the status-edit throttle, view timeouts) run in real time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import simcord

from bot.lock import InstanceLock
from bot.settings import Settings

log = logging.getLogger(__name__)

BOT_NAME = "imagine-bot"
TICK_S = 0.25  # how often the virtual clock catches up with the wall clock
REFRESH_S = 1.0  # at most one republication of the page per this many seconds
PAGE_SETTLE_S = 30.0
NAVIGATION = {"focus", "history"}  # page actions that take a person to a message (history "latest": back down)
FOLLOWING_AGAIN = {"run_command", "send_message", "click", "select", "modal_submit", "viewer"}  # a page action settles the bot's own work (never a render) within this


def lock_path(settings: Settings) -> Path:
    return settings.data_dir / "playground.lock"


@dataclass
class World:
    """The simulated Discord with the bot logged in, and the render service it uses."""

    env: simcord.Env
    bot: Any
    service: Any
    guild: Any
    channel: Any
    alice: Any
    bob: Any
    carol: Any  # has Manage Server: /config
    _closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def close(self) -> None:
        """Detach the bot, close its store, stop the render queue (a running render stops at its next step)."""
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("error while stopping the playground")


async def open_world(settings: Settings, *, service: Any = None, settle_timeout: float = PAGE_SETTLE_S,
                     sync_clock: bool = True) -> World:
    """Start the render service (unless given), the bot and SimCord; create the guild and members.

    The service is started here, outside the bot, so SimCord treats rendering as external work.
    An injected `service` (tests) must not be started yet; `World.close()` closes it either way.
    """
    from bot.app import create_bot
    from generation.queue.assembly import build_service
    from generation.queue import CallbackWaiter

    closers: list[Callable[[], Awaitable[Any]]] = []
    env_ref: dict[str, simcord.Env] = {}

    def queue_wait(awaitable: Any) -> Any:
        # The bot waiting on the render queue is an expected, external wait (renders are not bot work).
        return env_ref["env"].external_wait(awaitable, reason="render queue")

    if service is None:
        service = build_service(settings)  # a plain waiter: the queue is not bot-owned work here
    await service.start()
    closers.append(service.close)
    try:
        bot = create_bot(settings, service=service, waiter=CallbackWaiter(queue_wait))
        env = simcord.Env(bot, settle_timeout=settle_timeout, check_errors=False)
        env_ref["env"] = env
        await env.start()
        # SimCord detaches the bot without calling close(): close what its setup_hook opened (the store).
        closers.append(bot.close_resources)
        closers.append(env.shutdown)
        if sync_clock:
            await catch_up_clock(env)
        assert bot.user is not None  # logged in by env.start()
        await bot.user.edit(username=BOT_NAME)  # SimCord's bot account is called TestBot until renamed
        guild = env.create_guild("imagine-bot playground")
        channel = guild.create_text_channel("imagine")
        alice = guild.add_member(env.create_user("alice"))
        bob = guild.add_member(env.create_user("bob"))
        admin = guild.create_role("admin", permissions=discord.Permissions(manage_guild=True))
        carol = guild.add_member(env.create_user("carol"), roles=[admin])
    except BaseException:
        for closer in reversed(closers):
            try:
                await closer()
            except Exception:  # noqa: BLE001 - the original error matters more
                log.exception("error while stopping the playground")
        raise
    return World(env, bot, service, guild, channel, alice, bob, carol, closers)


async def catch_up_clock(env: simcord.Env) -> float:
    """Advance SimCord's virtual clock to the wall clock; returns the seconds advanced (0 if not behind)."""
    behind = (datetime.now(UTC) - env.now()).total_seconds()
    if behind <= 0:
        return 0.0
    await env.advance_time(behind)
    return behind


class LiveSync:
    """Keeps the page live: the virtual clock follows the wall clock; bot activity is republished.

    `step()` does one round and is what tests call; `run()` repeats it every `tick_s`. Page actions
    and these steps are SimCord operations, which must not overlap: both take `self.lock` (page
    actions through `hold_page_actions`).
    """

    def __init__(self, env: simcord.Env, preview: Any, *, refresh_s: float = REFRESH_S, tick_s: float = TICK_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.env = env
        self.preview = preview
        self.refresh_s = refresh_s
        self.tick_s = tick_s
        self.monotonic = monotonic
        self.lock = asyncio.Lock()
        self.published = len(env.http_requests)
        self.last_refresh = -math.inf
        self.refreshes = 0
        # page id -> {"head": revision after our latest push, "seen": {revision: snapshot}} for the
        # revisions that only our pushes have superseded since (see `_forgiven`)
        self._pushes: dict[str, dict[str, Any]] = {}
        self._navigated: set[str] = set()  # pages whose person went to a message on purpose (see `_follow_newest`)

    def hold_page_actions(self) -> None:
        """Run the page's actions under `self.lock`, so no step overlaps one.

        SimCord refuses overlapping operations, and a page action refused that way leaves the page
        "uncertain" until reloaded. Preview has no public hook for this: it wraps the method its
        server calls for each action (SimCord 3.2), and only warns if that method is gone.
        """
        original = getattr(self.preview, "_action", None)
        if original is None:
            log.warning("this SimCord has no Preview._action; a page action may rarely collide with an update")
            return
        lock = self.lock

        async def serialized(context_id: Any, body: Any) -> Any:
            async with lock:
                self._note_navigation(context_id, body)
                return await original(context_id, self._forgiven(context_id, body))

        self.preview._action = serialized

    def remember_viewer(self) -> None:
        """Open a reloaded page as the member chosen last in "Viewing as", not always the first one.

        SimCord's page opens without a viewer (the first of `viewers`) and keeps the choice only in
        that page. Wraps the method its server calls to open a page (SimCord 3.2); warns if gone.
        """
        open_page = getattr(self.preview, "_open_page", None)
        if open_page is None:
            log.warning("this SimCord has no Preview._open_page; a reloaded page opens as the first member")
            return
        chosen: dict[str, Any] = {}
        action = self.preview._action

        async def noting(context_id: Any, body: Any) -> Any:
            if isinstance(body, dict) and body.get("kind") == "viewer":
                chosen["viewer_id"] = body.get("viewer_id")
            return await action(context_id, body)

        def opening(viewer_id: Any = None, target_id: Any = None) -> Any:
            if viewer_id is None and chosen.get("viewer_id") is not None:
                try:
                    return open_page(chosen["viewer_id"], target_id)
                except simcord.SetupError:  # no longer a viewer: SimCord's default
                    pass
            return open_page(viewer_id, target_id)

        self.preview._action = noting
        self.preview._open_page = opening

    def _forgiven(self, context_id: Any, body: Any) -> Any:
        """The action, as of the page's current revision when only our pushes made it stale.

        Every action carries the revision its page showed; SimCord refuses it ("stale") if the page
        was republished since. Pushed every second while rendering, a page would refuse about one
        action in four. A command or message does not depend on what the page showed, and a click or
        select does not either if its message's components are as the page showed them: those are
        sent as of now. Anything else (or a page republished by anyone else) keeps SimCord's answer.
        """
        try:
            page = self.preview._pages.get(context_id)
            pushes = self._pushes.get(context_id)
            shown = body.get("published_revision")
            if page is None or pushes is None or pushes["head"] != page.revision or shown not in pushes["seen"]:
                return body
            kind = body.get("kind")
            if kind in ("click", "select"):
                target = str(body.get("target_id"))
                before = pushes["seen"][shown].get("messages", {}).get(target)
                now = page.snapshot.get("messages", {}).get(target)
                if before is None or now is None or before.get("components") != now.get("components"):
                    return body
            elif kind not in ("run_command", "send_message"):
                return body
            return {**body, "published_revision": page.revision}
        except Exception:  # noqa: BLE001 - SimCord's internals changed: let it judge the action itself
            log.debug("could not check an action's revision", exc_info=True)
            return body

    def _note_navigation(self, context_id: Any, body: Any) -> None:
        kind = body.get("kind") if isinstance(body, dict) else None
        if kind in NAVIGATION and body.get("direction") != "latest":
            self._navigated.add(str(context_id))
        elif kind in FOLLOWING_AGAIN:
            self._navigated.discard(str(context_id))

    def _follow_newest(self) -> None:
        """Point each page at the bot's newest message, so the page scrolls to a new status line.

        SimCord's page keeps its scroll anchor unless it sits exactly at the bottom, so a new message
        (the answer to what a person just did) lands below the fold; a page moves only to its
        *target* message. Pages whose person went to a message on purpose (search, history, jump) are
        left there until their next command, message or click.
        """
        try:
            for page_id, page in getattr(self.preview, "_pages", {}).items():
                if str(page_id) in self._navigated or page.modal is not None:
                    continue
                newest = self.preview._initial_target(page.viewer, page.channel_id)
                if newest is not None and newest != page.target_id:
                    page.target_id = newest
                    if page.layout == "channel":
                        page.window_end_id = newest
        except Exception:  # noqa: BLE001 - SimCord's internals changed: the page keeps its own scrolling
            log.debug("could not point a page at the newest message", exc_info=True)

    def _pushing(self) -> dict[str, tuple[int, Any]]:
        return {page_id: (page.revision, page.snapshot) for page_id, page in getattr(self.preview, "_pages", {}).items()}

    def _pushed(self, before: dict[str, tuple[int, Any]]) -> None:
        for page_id, page in getattr(self.preview, "_pages", {}).items():
            if page_id not in before:
                continue
            revision, snapshot = before[page_id]
            pushes = self._pushes.get(page_id)
            if pushes is None or pushes["head"] != revision:  # someone else published in between
                pushes = {"seen": {}}
            pushes["seen"][revision] = snapshot
            while len(pushes["seen"]) > 8:  # the page reads every half second: a few are plenty
                pushes["seen"].pop(min(pushes["seen"]))
            pushes["head"] = page.revision
            self._pushes[page_id] = pushes

    async def step(self) -> bool:
        """Catch the clock up; republish if the bot made requests since the last time. True if republished."""
        async with self.lock:
            await catch_up_clock(self.env)
            requests = len(self.env.http_requests)
            if requests == self.published or self.monotonic() - self.last_refresh < self.refresh_s:
                return False
            self._follow_newest()
            before = self._pushing()
            await self.preview.refresh()
            self._pushed(before)
            self.published = requests
            self.last_refresh = self.monotonic()
            self.refreshes += 1
            return True

    async def run(self) -> None:
        """Step every `tick_s` until cancelled (the playground cancels it when the page session ends)."""
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.step()
            except simcord.SetupError as error:  # the session is closing: refresh() refuses
                log.debug("live sync skipped a step: %s", error)
            except TimeoutError as error:  # the bot's own work did not settle in time: try again next tick
                log.warning("playground: the bot is slow to settle (%s); the page will catch up", error)


async def run_playground(settings: Settings, *, ready: asyncio.Event | None = None,
                         urls: list[str] | None = None, stop: asyncio.Event | None = None,
                         on_world: Callable[[World], Any] | None = None, service: Any = None) -> None:
    """Serve the playground until the page's "End preview session", `stop` being set, or cancellation.

    Raises bot.lock.AlreadyRunning (before touching any data) when another playground uses the same
    data folder. `ready`/`urls` let a caller (the screenshot and tour scripts, a test) learn the URL
    without parsing stdout; `on_world` gets the World once it is up; `service` replaces the render
    service built from `settings` (not started yet; tests).
    """
    with InstanceLock(lock_path(settings), what="An imagine-bot playground"):
        # The simulated world starts empty each run, so the playground keeps its own data folder and
        # starts it afresh: recovered jobs would otherwise point at channels that no longer exist.
        data_dir = settings.data_dir / "playground"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        settings = settings.model_copy(update={"data_dir": data_dir, "database_url": None})
        # A page action waits this long at most for the bot's own work (never for a render).
        world = await open_world(settings, service=service, settle_timeout=settings.playground_settle_s)
        sync_task: asyncio.Task | None = None
        try:
            if on_world is not None:
                on_world(world)
            async with world.env.preview(world.channel, viewers=[world.alice, world.bob, world.carol],
                                         layout="channel", port=settings.playground_port) as preview:
                live = LiveSync(world.env, preview)
                live.hold_page_actions()
                live.remember_viewer()
                sync_task = asyncio.create_task(live.run(), name="playground live sync")
                print("Open the address below in a browser, type /imagine; Ctrl-C stops.", flush=True)
                if world.bot.user is not None:  # the page's message box sends text as typed: no @ picker
                    print(f"Talk to it: reply to a result, or start a message with {world.bot.user.mention}",
                          flush=True)
                print(f"imagine-bot playground: {preview.url}", flush=True)  # the last line before requests
                if urls is not None:
                    urls.append(preview.url)
                if ready is not None:
                    ready.set()
                waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(preview.wait_closed())}
                if stop is not None:
                    waiters.add(asyncio.ensure_future(stop.wait()))
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                sync_task.cancel()
                await asyncio.gather(sync_task, return_exceptions=True)
        finally:
            if sync_task is not None and not sync_task.done():
                sync_task.cancel()
                await asyncio.gather(sync_task, return_exceptions=True)
            await world.close()
