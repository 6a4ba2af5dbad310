"""Prove the offline playground works in a real browser, and keep the picture.

    python -m playground.screenshot [--out docs/playground.png] [--url URL] [--click "Zoom Out 2×" ...]

Starts the playground in-process (unless --url points at one already running), drives Debian's
headless chromium over the Chrome DevTools Protocol like a person would — type "/imagine", pick the
command, fill prompt and seed, press Enter — waits for the bot's reply to show a rendered image and
saves a screenshot; with --click, it then presses those buttons of the newest result, one after the other,
waiting for each new result. Exit code 1 with a one-line reason on failure; chromium is always killed.
Only aiohttp (already installed with discord.py) is used to talk to the browser.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

PROMPT = "a red circle on a blue background"
SEED = 7
CHROMIUM = "/usr/bin/chromium"
IMAGE_TIMEOUT_S = 120.0

# The bot's result counts once one of its images (attachment, embed or media gallery image) has decoded: the page
# swaps a blob: URL in only after the asset loaded, and naturalWidth is 0 until the image decoded.
# A result has a Reroll button (a status line's progress preview is an image too, without one).
# An ephemeral bot reply without an image is the bot refusing or failing: stop waiting at once.
BOT_IMAGE_JS = """(() => {
  const skip = window.imagineSeenResults || [];
  for (const msg of document.querySelectorAll('#channel-message-list .channel-message')) {
    if (skip.includes(msg.dataset.messageId)) continue;
    if (!msg.querySelector('.message-app-badge, .message-interaction-header')) continue;
    const labels = [...msg.querySelectorAll('.component-button .button-label')].map(b => b.textContent);
    if (!msg.querySelector('.message-ephemeral-note') && !labels.includes('Reroll')) continue;
    for (const img of msg.querySelectorAll('img.attachment-image, .embed-media img, img.gallery-image')) {
      if (img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0) {
        msg.scrollIntoView({block: 'end'});
        return {id: msg.dataset.messageId, width: img.naturalWidth, height: img.naturalHeight};
      }
    }
    if (msg.querySelector('.message-ephemeral-note')) {
      return {error: (msg.querySelector('.message-content') || msg).innerText.trim()};
    }
  }
  return null;
})()"""


class Failure(Exception):
    """A one-line reason the proof failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CDP:
    """The few DevTools calls this script needs, over one page websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            future = self.waiting.pop(data.get("id"), None)  # events have no id and are ignored
            if future is not None and not future.done():
                future.set_result(data)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(Failure("chromium closed the DevTools connection"))

    async def call(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 60)
        if "error" in reply:
            raise Failure(f"{method} failed: {reply['error'].get('message')}")
        return reply["result"]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise Failure(f"page script failed: {result['exceptionDetails'].get('text')} in {expression[:60]!r}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.25)
        raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, so the page's own handlers run."""
        box = await self.wait_for(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
              if (!el || !el.isConnected) return null; el.scrollIntoView({{block: 'nearest'}});
              const r = el.getBoundingClientRect();
              return r.width > 0 ? {{x: r.x + r.width / 2, y: r.y + r.height / 2}} : null; }})()""",
            f"a visible {selector}")
        await self.call("Input.dispatchMouseEvent", type="mouseMoved", x=box["x"], y=box["y"])
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    async def type(self, text: str) -> None:
        await self.call("Input.insertText", text=text)  # fires the same input events as typing

    async def press_enter(self) -> None:
        keys = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text="\r", **keys)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **keys)

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


async def start_chromium(profile: str, port: int, log_path: Path) -> asyncio.subprocess.Process:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            # several tabs (one per member) all keep polling their page at full speed
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "--window-size=1280,900",
            "about:blank"]
    with open(log_path, "wb") as log:
        # Its own process group, so its zygote/renderer children die with it.
        return await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                    stderr=log, start_new_session=True)


async def kill_chromium(proc: asyncio.subprocess.Process) -> None:
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            pass


async def page_websocket(http: aiohttp.ClientSession, port: int, proc: asyncio.subprocess.Process,
                         log_path: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines() or [""]
            raise Failure(f"chromium exited with code {proc.returncode} at start: {lines[-1][:200]}")
        try:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                pages = [t for t in await resp.json() if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except (aiohttp.ClientError, ValueError):
            pass
        await asyncio.sleep(0.3)
    raise Failure("chromium's DevTools endpoint did not come up within 30s")


READY_JS = """(() => { const p = window.simcordPreview; return p && p.ready && p.authorized
    && (p.awaitingRevision === null || p.awaitingRevision <= p.publishedRevision)
    && p.commandPicker.state !== 'unavailable' && p.commandPicker.catalog.state === 'ready'; })()"""


async def open_page(cdp: CDP, url: str) -> None:
    """Open the playground page in this tab and wait until it can take a command."""
    await cdp.call("Page.enable")
    await cdp.call("Page.bringToFront")
    # A fixed viewport, so the picture is 1280x900 whatever headless makes of --window-size.
    await cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    await cdp.call("Page.navigate", url=url)
    # Ready = page authorized, snapshot rendered and the command catalog fetched.
    await cdp.wait_for(READY_JS, "the playground page to be ready with its command list", timeout=60)


async def last_request_id(cdp: CDP) -> str | None:
    return await cdp.js("window.simcordPreview.lastAction?.requestId || null")


async def acted(cdp: CDP, before: str | None, what: str) -> bool:
    """Wait for the page's receipt of the action after `before`; False when it must be repeated.

    The page sends each action with the revision it shows; an update pushed a moment earlier makes
    it "stale" and SimCord refuses it (nothing happened; the draft is kept): then it is sent again.
    """
    receipt_js = f"""(() => {{ const p = window.simcordPreview, a = p.lastAction;
        return !p.pendingAction && a && a.requestId !== {json.dumps(before)} ? a : null; }})()"""
    try:
        receipt = await cdp.wait_for(receipt_js, f"the page's receipt for {what}", timeout=10)
    except Failure:
        if not await cdp.js("!!window.simcordPreview.pendingAction"):
            return False  # the page did not send it (it was still catching up): send it again
        receipt = await cdp.wait_for(receipt_js, f"the page's receipt for {what}", timeout=90)
    codes = [d.get("code") for d in receipt.get("diagnostics") or []]
    if receipt.get("rejected") and "stale-revision" in codes:
        await cdp.wait_for(READY_JS, "the page to catch up")
        return False
    if receipt.get("rejected") or receipt.get("settlement") not in (None, "settled"):
        raise Failure(f"{what} was not completed: {json.dumps(receipt)[:300]}")
    return True


async def run_command(cdp: CDP, command: str, options: dict[str, Any]) -> None:
    """Type `/command`, pick it, fill `options` (adding optional ones from "+N options"), press Enter."""
    await cdp.call("Page.bringToFront")  # the tab a person would be looking at
    await cdp.click("#channel-composer-input")
    await cdp.type(f"/{command}")
    entry = ".command-entry[data-entry-key]"
    name = json.dumps(f"/{command}")
    await cdp.wait_for(f"""[...document.querySelectorAll({json.dumps(entry)})].some(
        e => e.querySelector('strong')?.textContent === {name})""", f"/{command} in the command picker")
    # Click the entry itself: other commands may also match what was typed.
    key = await cdp.js(f"""[...document.querySelectorAll({json.dumps(entry)})].find(
        e => e.querySelector('strong')?.textContent === {name}).dataset.entryKey""")
    await cdp.click(f".command-entry[data-entry-key={json.dumps(key)}]")
    for option, value in options.items():
        field = f'.command-option-input[data-option="{option}"]'
        if not await cdp.js(f"!!document.querySelector({json.dumps(field)})"):
            # an optional option: add it from the "+N options" menu, as in Discord
            await cdp.click(".command-row .command-ghost")
            await cdp.click(f'.command-popup .command-suggestion[data-value="{option}"]')
        await cdp.click(field)
        await cdp.type(str(value))
    draft = await cdp.js("window.simcordPreview.commandPicker.draft")
    if not draft or not draft.get("submittable"):
        raise Failure(f"the /{command} draft is not submittable: {json.dumps(draft)[:300]}")
    for _ in range(5):
        before = await last_request_id(cdp)
        await cdp.press_enter()
        if await acted(cdp, before, f"/{command}"):
            return
    raise Failure(f"/{command} was refused as stale five times")


async def run_imagine(cdp: CDP, url: str) -> dict:
    """Open the page and run /imagine through its UI; return the bot message id and image size."""
    await open_page(cdp, url)
    await run_command(cdp, "imagine", {"prompt": PROMPT, "seed": SEED})
    try:
        found = await cdp.wait_for(BOT_IMAGE_JS, "the bot's reply with an image", timeout=IMAGE_TIMEOUT_S)
    except Failure:
        notes = await cdp.js("""JSON.stringify({status: document.getElementById('action-status')?.textContent,
            diagnostics: window.simcordPreview.diagnostics.slice(-3).map(d => d.message),
            last: document.querySelector('#channel-message-list .channel-message:last-child')?.innerText})""")
        raise Failure(f"no image from the bot within {IMAGE_TIMEOUT_S:.0f}s; page says {notes[:400]}") from None
    if "error" in found:
        raise Failure(f"the bot answered without an image: {' '.join(found['error'].split())[:300]}")
    return found


async def click_result_button(cdp: CDP, message_id: str, label: str) -> dict:
    """Press the button labelled `label` on that result and wait for the new result it makes."""
    pressed = await cdp.js(f"""(() => {{
      window.imagineSeenResults = [...(window.imagineSeenResults || []), {json.dumps(message_id)}];
      const msg = document.querySelector('#channel-message-list .channel-message[data-message-id="' +
                                         {json.dumps(message_id)} + '"]');
      const button = msg && [...msg.querySelectorAll('.component-button')].find(
        b => b.textContent.trim().endsWith({json.dumps(label)}));
      if (!button) return false;
      button.scrollIntoView({{block: 'center'}});
      button.click();
      return true;
    }})()""")
    if not pressed:
        labels = await cdp.js("""[...document.querySelectorAll('#channel-message-list .component-button')]
            .map(b => b.textContent.trim()).join(' | ')""")
        raise Failure(f"no {label!r} button on the result (buttons: {str(labels)[:300]})")
    found = await cdp.wait_for(BOT_IMAGE_JS, f"the result of {label!r}", timeout=IMAGE_TIMEOUT_S)
    if "error" in found:
        raise Failure(f"{label!r} answered without an image: {' '.join(found['error'].split())[:300]}")
    return found


async def start_playground(data_dir: Path, on_world: Callable | None = None, **changes: Any) -> tuple[asyncio.Task, str]:
    """Run the playground in this process (data in `data_dir`, a free port; `on_world` gets its World)."""
    from playground.simulator import run_playground
    from bot.settings import Settings

    settings = Settings(data_dir=data_dir, playground_port=free_port(), **changes).with_cpu_thread_default()
    ready = asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(run_playground(settings, ready=ready, urls=urls, on_world=on_world))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=180, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        error = task.exception() if not task.cancelled() else None
        raise Failure(f"the playground stopped before serving: {error!r}")
    if not urls:
        task.cancel()
        raise Failure("the playground did not come up within 180s")
    return task, urls[0]


async def stop_playground(cdp: CDP | None, task: asyncio.Task) -> None:
    """End the session from the page (More → End preview session); cancel if that does not stop it."""
    if cdp is not None:
        try:
            await cdp.click(".session-menu summary")
            await cdp.click("#close")
            await asyncio.wait_for(asyncio.shield(task), 30)
            return
        except Exception:  # noqa: BLE001 - whatever went wrong, cancelling below still stops it
            pass
    task.cancel()
    try:
        await asyncio.wait_for(task, 30)
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - we are stopping, its outcome is moot
        pass


class Browser:
    """Headless chromium with DevTools tabs; `tab()` opens one more (the first reuses about:blank)."""

    def __init__(self, http: aiohttp.ClientSession, port: int, proc: asyncio.subprocess.Process,
                 log_path: Path) -> None:
        self.http, self.port, self.proc, self.log_path = http, port, proc, log_path
        self.tabs: list[CDP] = []

    async def tab(self) -> CDP:
        if self.tabs:
            async with self.http.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as resp:
                url = (await resp.json())["webSocketDebuggerUrl"]
        else:
            url = await page_websocket(self.http, self.port, self.proc, self.log_path)
        cdp = CDP(await self.http.ws_connect(url, max_msg_size=0))
        self.tabs.append(cdp)
        return cdp

    async def screenshot(self, cdp: CDP, out: Path) -> Path:
        await cdp.call("Page.bringToFront")
        try:  # a pushed update may have just swapped an image: let the new one load
            await cdp.wait_for("""[...document.querySelectorAll('#channel-message-list img')].every(
                img => img.complete && img.naturalWidth > 0)""", "images to load", timeout=10)
        except Failure:
            pass
        await asyncio.sleep(0.5)  # let a scroll into view and image decoding settle before the picture
        shot = await cdp.call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out


@contextlib.asynccontextmanager
async def browser(tmp: Path) -> AsyncIterator[Browser]:
    """Chromium in its own process group, always killed on the way out."""
    if not Path(CHROMIUM).exists():
        raise Failure(f"{CHROMIUM} is missing: apt-get install -y chromium")
    port = free_port()
    log_path = tmp / "chromium.log"
    proc = await start_chromium(str(tmp / "profile"), port, log_path)
    try:
        async with aiohttp.ClientSession() as http:
            opened = Browser(http, port, proc, log_path)
            try:
                yield opened
            finally:
                for cdp in opened.tabs:
                    await cdp.close()
    finally:
        await kill_chromium(proc)


@contextlib.asynccontextmanager
async def playground(tmp: Path, url: str | None, on_world: Callable | None = None,
                     **changes: Any) -> AsyncIterator[tuple[str, Callable]]:
    """The URL of `url`'s playground, or of one started here; yields (url, stop(cdp)) and stops it."""
    task = None
    if url is None:
        task, url = await start_playground(tmp / "data", on_world, **changes)
    stopped = False

    async def stop(cdp: CDP | None) -> None:
        nonlocal stopped
        if task is not None and not stopped:
            stopped = True
            await stop_playground(cdp, task)

    try:
        yield url, stop
    finally:
        await stop(None)


async def prove(out: Path, url: str | None, clicks: tuple[str, ...] = ()) -> None:
    with tempfile.TemporaryDirectory(prefix="imagine-shot-") as tmp:
        async with playground(Path(tmp), url) as (url, stop), browser(Path(tmp)) as chromium:
            cdp = await chromium.tab()
            found = await run_imagine(cdp, url)
            for label in clicks:
                found = await click_result_button(cdp, found["id"], label)
            await chromium.screenshot(cdp, out)
            await stop(cdp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/playground.png"), help="PNG to write")
    parser.add_argument("--url", help="an already running playground's URL (with its #secret)")
    parser.add_argument("--click", action="append", default=[], metavar="LABEL",
                        help="then press this button of the newest result (repeatable), e.g. 'Zoom Out 2×'")
    args = parser.parse_args(argv)
    from bot.__main__ import configure_logging

    configure_logging("WARNING")
    try:
        asyncio.run(prove(args.out, args.url, tuple(args.click)))
    except Failure as exc:
        print(f"screenshot failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("screenshot failed: interrupted", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
