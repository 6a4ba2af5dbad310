"""Prove the offline playground works in a real browser, and keep the picture.

    python -m bot.screenshot [--out docs/playground.png] [--url URL]

Starts the playground in-process (unless --url points at one already running), drives Debian's
headless chromium over the Chrome DevTools Protocol like a person would — type "/imagine", pick the
command, fill prompt and seed, press Enter — waits for the bot's reply to show a rendered image and
saves a screenshot. Exit code 1 with a one-line reason on failure; chromium is always killed.
Only aiohttp (already installed with discord.py) is used to talk to the browser.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

PROMPT = "a red circle on a blue background"
SEED = 7
CHROMIUM = "/usr/bin/chromium"
IMAGE_TIMEOUT_S = 120.0

# The bot's reply counts once one of its images (attachment or embed image) has decoded: the page
# swaps a blob: URL in only after the asset loaded, and naturalWidth is 0 until the image decoded.
# An ephemeral bot reply without an image is the bot refusing or failing: stop waiting at once.
BOT_IMAGE_JS = """(() => {
  for (const msg of document.querySelectorAll('#channel-message-list .channel-message')) {
    if (!msg.querySelector('.message-app-badge, .message-interaction-header')) continue;
    for (const img of msg.querySelectorAll('img.attachment-image, .embed-media img')) {
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


async def run_imagine(cdp: CDP, url: str) -> dict:
    """Open the page and run /imagine through its UI; return the bot message id and image size."""
    await cdp.call("Page.enable")
    # A fixed viewport, so the picture is 1280x900 whatever headless makes of --window-size.
    await cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    await cdp.call("Page.navigate", url=url)
    # Ready = page authorized, snapshot rendered and the command catalog fetched.
    await cdp.wait_for("""(() => { const p = window.simcordPreview; return p && p.ready && p.authorized
        && p.commandPicker.state !== 'unavailable' && p.commandPicker.catalog.state === 'ready'; })()""",
                       "the playground page to be ready with its command list", timeout=60)
    await cdp.click("#channel-composer-input")
    await cdp.type("/imagine")
    entry = ".command-entry[data-entry-key]"
    await cdp.wait_for(f"""[...document.querySelectorAll({json.dumps(entry)})].some(
        e => e.querySelector('strong')?.textContent === '/imagine')""", "/imagine in the command picker")
    # Click the /imagine entry itself: other commands may also match what was typed.
    key = await cdp.js(f"""[...document.querySelectorAll({json.dumps(entry)})].find(
        e => e.querySelector('strong')?.textContent === '/imagine').dataset.entryKey""")
    await cdp.click(f".command-entry[data-entry-key={json.dumps(key)}]")
    prompt_field = '.command-option-input[data-option="prompt"]'
    await cdp.click(prompt_field)
    await cdp.type(PROMPT)
    seed_field = '.command-option-input[data-option="seed"]'
    if not await cdp.js(f"!!document.querySelector({json.dumps(seed_field)})"):
        # seed is optional: add it from the "+N options" menu, as in Discord.
        await cdp.click(".command-row .command-ghost")
        await cdp.click('.command-popup .command-suggestion[data-value="seed"]')
    await cdp.click(seed_field)
    await cdp.type(str(SEED))
    draft = await cdp.js("window.simcordPreview.commandPicker.draft")
    if not draft or not draft.get("submittable"):
        raise Failure(f"the /imagine draft is not submittable: {json.dumps(draft)[:300]}")
    await cdp.press_enter()
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


async def start_playground(data_dir: Path) -> tuple[asyncio.Task, str]:
    from bot.playground import run_playground
    from bot.settings import Settings

    settings = Settings(data_dir=data_dir, playground_port=free_port())
    ready, urls = asyncio.Event(), []
    task = asyncio.create_task(run_playground(settings, ready=ready, urls=urls))
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


async def prove(out: Path, url: str | None) -> None:
    if not Path(CHROMIUM).exists():
        raise Failure(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="imagine-shot-") as tmp:
        task = None
        if url is None:
            task, url = await start_playground(Path(tmp) / "data")
        port = free_port()
        log_path = Path(tmp) / "chromium.log"
        proc = await start_chromium(str(Path(tmp) / "profile"), port, log_path)
        cdp = None
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(await page_websocket(http, port, proc, log_path), max_msg_size=0)
                cdp = CDP(ws)
                await run_imagine(cdp, url)
                await asyncio.sleep(0.5)  # let the scroll into view settle before the picture
                shot = await cdp.call("Page.captureScreenshot", format="png")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(shot["data"]))
                if task is not None:
                    await stop_playground(cdp, task)
                    task = None
                await cdp.close()
        finally:
            await kill_chromium(proc)
            if task is not None:
                await stop_playground(None, task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/playground.png"), help="PNG to write")
    parser.add_argument("--url", help="an already running playground's URL (with its #secret)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(prove(args.out, args.url))
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
