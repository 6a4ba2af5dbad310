"""A scripted tour of the live playground in headless chromium, with screenshots for the README.

    python -m playground.tour [--out docs] [--url URL]

Two tabs, one per member (alice and bob, each page's "Viewing as"), do what two people would:
alice asks for a big grid; while it renders, bob queues two images. The tour checks that bob sees
his queue positions and alice's progress line with its preview, that bob can cancel his first job,
that the two other jobs deliver their results, and that /history dates agree with the page's clock
("now", not "in 48 weeks"). Nobody presses Refresh: the page is pushed. Screenshots go to
`--out` (tour-1-queue.png, tour-2-cancel.png, tour-3-results.png, tour-4-history.png). Exit code 1 with a one-line
reason on failure; chromium is always killed. Shares its browser code with playground.screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from playground.screenshot import CDP, Failure, READY_JS, acted, browser, last_request_id, open_page, playground, run_command

# alice's grid is big enough (4 images, 88x88 — the shipped model's largest side —, 50 steps) to be still
# rendering while bob queues.
ALICE: dict[str, Any] = {"prompt": "a red circle on a blue background", "count": 4, "width": 88, "height": 88, "steps": 50,
         "seed": 7}
BOB_CANCELLED: dict[str, Any] = {"prompt": "a yellow square on a green background", "seed": 3}
BOB_KEPT: dict[str, Any] = {"prompt": "a blue triangle on a white background", "seed": 5}
WAIT_S = 240.0

# Every bot message on the page: id, text, decoded images, button labels.
MESSAGES_JS = """(() => [...document.querySelectorAll('#channel-message-list .channel-message')].map(msg => ({
  id: msg.dataset.messageId,
  text: msg.innerText,
  images: [...msg.querySelectorAll('img.attachment-image, .embed-media img, img.gallery-image')]
    .filter(img => img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0).length,
  buttons: [...msg.querySelectorAll('.component-button .button-label')].map(b => b.textContent),
})))()"""


def find_js(predicate: str) -> str:
    """JS returning the first message (see MESSAGES_JS) for which `predicate` (on `m`) holds, scrolled into view."""
    return f"""(() => {{ const found = {MESSAGES_JS}.find(m => {predicate});
        if (found) document.querySelector(`#channel-message-list [data-message-id="${{found.id}}"]`)?.scrollIntoView({{block: 'end'}});
        return found || null; }})()"""


def status_of(prompt: str, condition: str) -> str:
    return find_js(f"m.text.includes({json.dumps(prompt)}) && ({condition})")


async def wait_message(cdp: CDP, prompt: str, condition: str, what: str) -> dict:
    return await cdp.wait_for(status_of(prompt, condition), what, timeout=WAIT_S)


async def view_as(cdp: CDP, member: str) -> None:
    """Switch this tab's "Viewing as" to `member`."""
    value = await cdp.js(f"""(() => {{ const s = document.getElementById('viewer-picker');
        const o = [...s.options].find(o => o.textContent.trim().startsWith({json.dumps(member)}));
        if (!o) return null; s.value = o.value; s.dispatchEvent(new Event('change', {{bubbles: true}}));
        return o.value; }})()""")
    if value is None:
        raise Failure(f"no viewer named {member} in the page")
    await cdp.wait_for(f"window.simcordPreview.viewerId === {json.dumps(value)} && {READY_JS}",
                       f"the page to show {member}'s view", timeout=60)


async def click_button(cdp: CDP, message_id: str, label: str) -> None:
    """Click `label` under message `message_id` (again if the page's view was one push behind)."""
    mark = f"tour-{message_id}-{label}".replace(" ", "-")
    for _ in range(5):
        found = await cdp.js(f"""(() => {{ const msg = document.querySelector('#channel-message-list [data-message-id="{message_id}"]');
            const button = msg && [...msg.querySelectorAll('.component-button')].find(
                b => b.querySelector('.button-label')?.textContent === {json.dumps(label)});
            if (!button) return false; button.setAttribute('data-tour', {json.dumps(mark)}); return true; }})()""")
        if not found:
            raise Failure(f"no {label} button on message {message_id}")
        before = await last_request_id(cdp)
        await cdp.call("Page.bringToFront")
        await cdp.click(f'[data-tour="{mark}"]')
        if await acted(cdp, before, f"the {label} click"):
            return
    raise Failure(f"the {label} click was refused as stale five times")


async def tour(out: Path, url: str | None) -> list[Path]:
    shots: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="imagine-tour-") as tmp:
        async with playground(Path(tmp), url) as (url, stop), browser(Path(tmp)) as chromium:
            alice = await chromium.tab()
            await open_page(alice, url)
            bob = await chromium.tab()
            await open_page(bob, url)
            await view_as(bob, "bob")

            await run_command(alice, "imagine", ALICE)
            await wait_message(alice, ALICE["prompt"], "/Queued|Starting|Rendering/.test(m.text)",
                               "alice's status line")
            await run_command(bob, "imagine", BOB_CANCELLED)
            await run_command(bob, "imagine", BOB_KEPT)
            # bob's view, pushed: his two queue positions and alice's progress with a preview
            cancelled = await wait_message(bob, BOB_CANCELLED["prompt"], "m.text.includes('Queued — position')",
                                           "a queue position on bob's first job")
            await wait_message(bob, BOB_KEPT["prompt"], "m.text.includes('Queued — position')",
                               "a queue position on bob's second job")
            await wait_message(bob, ALICE["prompt"], "m.text.includes('Rendering step') && m.images > 0",
                               "alice's progress line with its preview, on bob's page")
            shots.append(await chromium.screenshot(bob, out / "tour-1-queue.png"))

            await click_button(bob, cancelled["id"], "Cancel")
            await wait_message(bob, BOB_CANCELLED["prompt"], "m.text.includes('Cancelled')",
                               "bob's first job cancelled")
            shots.append(await chromium.screenshot(bob, out / "tour-2-cancel.png"))

            await wait_message(alice, ALICE["prompt"], "m.buttons.includes('Reroll') && m.images > 0",
                               "alice's grid")
            await wait_message(alice, BOB_KEPT["prompt"], "m.buttons.includes('Reroll') && m.images > 0",
                               "bob's triangle")
            shots.append(await chromium.screenshot(alice, out / "tour-3-results.png"))

            await run_command(alice, "history", {})
            history = await wait_message(alice, "", "/#\\d+ · /.test(m.text) && m.text.includes('seed')",
                                         "alice's /history")
            if "ago" not in history["text"] or " in " in history["text"]:
                raise Failure(f"/history times disagree with the page's clock: {history['text'][:200]}")
            shots.append(await chromium.screenshot(alice, out / "tour-4-history.png"))
            await stop(alice)
    return shots


def main(argv: list[str] | None = None) -> int:
    from bot.__main__ import configure_logging

    parser = argparse.ArgumentParser(prog="python -m playground.tour", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for the screenshots")
    parser.add_argument("--url", help="an already running playground's URL (with its #secret)")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    try:
        shots = asyncio.run(tour(args.out, args.url))
    except Failure as exc:
        print(f"tour failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tour failed: interrupted", file=sys.stderr)
        return 1
    for shot in shots:
        print(shot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
