"""A scripted tour of the live playground in headless chromium, with screenshots for the README.

    python -m playground.tour [--out docs] [--url URL --mention "<@id>"]

Two tabs, one per member (alice and bob, each page's "Viewing as"), do what two people would:
alice asks for a big grid; while it renders, bob queues two images. The tour checks that bob sees
his queue positions and alice's progress line with its preview, that bob can cancel his first job,
that the two other jobs deliver their results, and that /history dates agree with the page's clock
("now", not "in 48 weeks"). Then bob presses Zoom Out 2× and ➡️ Pan on his triangle; a third tab,
carol (Manage Server), bans a word with /config and alice's prompt with it is refused; alice talks to
the bot with the shipped model (a mention, then replies: CONVERSATION). Nobody presses Refresh: the
page is pushed. Screenshots go to `--out` (tour-1-queue … tour-8-refused.png, and tour-conv-1 …
tour-conv-5.png cropped to each turn). Exit code 1 with a one-line reason on failure; chromium is
always killed. Shares its browser code with playground.screenshot.
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
BANNED = "purple"
# A conversation with the shipped model: a mention starts it, each reply to the newest result changes it.
CONVERSATION = ("a red circle on a blue background --seed 7", "make it green", "on a yellow background", "wider", "again")

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


def newest_result_js(seen: list[str]) -> str:
    """JS: the newest message with pictures and Reroll that is none of `seen` (scrolled into view), or null."""
    return f"""(() => {{ const found = {MESSAGES_JS}.filter(m => m.images > 0 && m.buttons.includes('Reroll')
            && !{json.dumps(seen)}.includes(m.id)).pop();
        if (!found) return null;
        const element = document.querySelector(`#channel-message-list [data-message-id="${{found.id}}"]`);
        const timeline = element.closest('#channel-message-list').parentElement.getBoundingClientRect();
        found.followed = element.getBoundingClientRect().bottom <= timeline.bottom + 1;  // before we scroll
        element.scrollIntoView({{block: 'end'}});
        return found; }})()"""


async def new_result(cdp: CDP, seen: list[str], what: str) -> dict:
    """Wait for a result that is none of `seen`; adds it to `seen`."""
    found = await cdp.wait_for(newest_result_js(seen), what, timeout=WAIT_S)
    seen.append(found["id"])
    return found


async def send_text(cdp: CDP, text: str, reply_to: str | None = None) -> None:
    """Type `text` in the message box (as a reply to `reply_to`: its Reply action) and send it."""
    await cdp.call("Page.bringToFront")
    if reply_to is not None:  # the Reply action shows on hover; its own click handler starts the reply
        if not await cdp.js(f"""(() => {{ const b = document.querySelector('[data-control-key="message:{reply_to}:action:reply"]');
                if (!b) return false; b.click(); return true; }})()"""):
            raise Failure(f"no Reply action on message {reply_to}")
        await cdp.wait_for("!document.getElementById('reply-context').hidden", "the reply bar")
    await cdp.click("#channel-composer-input")
    await cdp.type(text)
    for _ in range(5):  # a stale send keeps the draft: send it again
        before = await last_request_id(cdp)
        await cdp.press_enter()
        if await acted(cdp, before, f"the message {text!r}"):
            return
    raise Failure(f"the message {text!r} was refused as stale five times")


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
            const button = msg && [...msg.querySelectorAll('.component-button')].find(b => [
                b.querySelector('.button-label')?.textContent, b.querySelector('.button-emoji')?.textContent?.trim(),
                b.querySelector('.button-emoji img')?.alt].includes({json.dumps(label)}));
            if (!button) return false; button.setAttribute('data-tour', {json.dumps(mark)}); return true; }})()""")
        if not found:
            raise Failure(f"no {label} button on message {message_id}")
        before = await last_request_id(cdp)
        await cdp.call("Page.bringToFront")
        await cdp.click(f'[data-tour="{mark}"]')
        if await acted(cdp, before, f"the {label} click"):
            return
    raise Failure(f"the {label} click was refused as stale five times")


async def tour(out: Path, url: str | None, mention: str | None) -> list[Path]:
    shots: list[Path] = []
    known: dict[str, str] = {}

    def learn_mention(world: Any) -> None:
        known["mention"] = world.bot.user.mention

    with tempfile.TemporaryDirectory(prefix="imagine-tour-") as tmp:
        async with playground(Path(tmp), url, learn_mention) as (url, stop), browser(Path(tmp)) as chromium:
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

            # Zoom Out and Pan on bob's triangle (anyone may press them)
            seen = [m["id"] for m in await bob.js(MESSAGES_JS)]
            triangle = await wait_message(bob, BOB_KEPT["prompt"], "m.buttons.includes('Reroll') && m.images > 0",
                                          "bob's triangle")
            await click_button(bob, triangle["id"], "Zoom Out 2×")
            zoomed = await new_result(bob, seen, "the zoomed-out triangle")
            shots.append(await chromium.screenshot(bob, out / "tour-5-zoom-out.png"))
            await click_button(bob, zoomed["id"], "➡️")
            await new_result(bob, seen, "the panned triangle")
            shots.append(await chromium.screenshot(bob, out / "tour-6-pan.png"))

            # /config as carol (Manage Server): ban a word; alice's prompt with it is refused, nothing queued
            carol = await chromium.tab()
            await open_page(carol, url)
            await view_as(carol, "carol")
            await run_command(carol, "config banned_words", {"add": BANNED})
            await wait_message(carol, BANNED, "/banned/i.test(m.text)", "carol's /config answer")
            shots.append(await chromium.screenshot(carol, out / "tour-7-config.png"))
            await run_command(alice, "imagine", {"prompt": f"a {BANNED} circle"})
            await wait_message(alice, "does not allow", "true", "alice's refusal")
            shots.append(await chromium.screenshot(alice, out / "tour-8-refused.png"))

            shots += await conversation(chromium, alice, out, known.get("mention") or mention)
            await stop(alice)
    for shot in shots:
        shrink(shot)
    return shots


def shrink(shot: Path) -> None:
    """Store a screenshot with a 256-colour palette: the page's flat colours survive, the file is a third."""
    import PIL.Image

    with PIL.Image.open(shot) as image:
        small = image.convert("RGB").quantize(256, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE)
    small.save(shot, optimize=True)


async def conversation(chromium: Any, cdp: CDP, out: Path, mention: str | None) -> list[Path]:
    """alice talks to the bot: a mention, then replies to each newest result (tour-conv-N.png)."""
    if mention is None:
        raise Failure("the conversation needs the bot's mention: pass --mention '<@id>' (the playground prints it)")
    shots: list[Path] = []
    seen = [m["id"] for m in await cdp.js(MESSAGES_JS)]
    latest: str | None = None
    for number, words in enumerate(CONVERSATION, start=1):
        if latest is None:
            await send_text(cdp, f"{mention} {words}")
        else:
            await send_text(cdp, words, reply_to=latest)
        answer = await new_result(cdp, seen, f"the answer to {words!r}")
        if not answer.get("followed"):
            # SimCord's page scrolls to a new message but keeps its anchor while that message grows
            print(f"note: the answer to {words!r} had grown below the fold (SimCord keeps the scroll anchor)",
                  file=sys.stderr)
        latest = answer["id"]
        shot = await chromium.screenshot(cdp, out / f"tour-conv-{number}.png")
        shots.append(await crop_to_turn(cdp, shot, latest))
    return shots


async def crop_to_turn(cdp: CDP, shot: Path, answer_id: str) -> Path:
    """Crop a screenshot to the message column, from the message before the answer to the answer."""
    import PIL.Image

    box = await cdp.js(f"""(() => {{ const answer = document.querySelector('#channel-message-list [data-message-id="{answer_id}"]');
        let asked = answer.previousElementSibling;
        while (asked && !asked.dataset.messageId) asked = asked.previousElementSibling;
        const top = (asked || answer).getBoundingClientRect(), bottom = answer.getBoundingClientRect();
        const card = answer.querySelector('.embed-card') || answer;
        return {{left: top.left, top: top.top, right: Math.min(card.getBoundingClientRect().right, bottom.left + 700) + 16,
                 bottom: bottom.bottom, scale: window.devicePixelRatio}}; }})()""")
    scale = box["scale"]
    with PIL.Image.open(shot) as image:
        area = tuple(round(box[side] * scale) for side in ("left", "top", "right", "bottom"))
        area = (max(0, area[0]), max(0, area[1]), min(image.width, area[2]), min(image.height, area[3]))
        image.crop(area).save(shot, optimize=True)
    return shot


def main(argv: list[str] | None = None) -> int:
    from bot.__main__ import configure_logging

    parser = argparse.ArgumentParser(prog="python -m playground.tour", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for the screenshots")
    parser.add_argument("--url", help="an already running playground's URL (with its #secret)")
    parser.add_argument("--mention", help="with --url: the bot's mention, <@id> (the playground prints it)")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    try:
        shots = asyncio.run(tour(args.out, args.url, args.mention))
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
