"""Turns that ask for an action on the parent: the words people use for the result buttons.

Each reader takes the normalised words and the turn's context and returns an `Interpretation` (the action,
or a refusal when the action can't be done as asked), or None when the words are no such action.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..editing import ZOOM_RANGE, region_text
from .interpretation import Interpretation, Kind, TurnContext, describe_action, refuse
from .words import ORDINALS, number

_REROLL = re.compile(
    r"^(again|(do it|try it|try|run it|go|one more time|same) again|once more|(one|1) more( time| please)?|"
    r"another( one| try| take| go| version)?|give me another( one)?|reroll( it| that)?|redo( it| that)?|"
    r"retry|new seed|different seed|(same|same prompt|same thing|same settings),? (but )?(with )?"
    r"(a )?(new|different|another|other) seed)$")
# "hit it again", "try another seed", "again but different": a reroll word and nothing but these around it.
_REROLL_WORD = re.compile(r"\b(again|reroll|redo|retry|another (seed|one|try|take|go|batch|round|set)|(new|different|other) seed)\b")
_REROLL_ONLY = frozenset("hit it again try another seed but different same prompt do run go one more time with a the "
                         "new other please reroll redo retry take that this and different batch round set".split())
_ZOOM = re.compile(r"\bzoom(ed)? ?out\b|\bzoom\b.*\bout\b|\bpull (back|out)\b|\bshow more around\b|"
                   r"\bwider (shot|view|angle)\b|\bfurther away\b|\bshow more of the (scene|surroundings)\b")
_PAN_TRIGGER = re.compile(r"\b(pan|extend|expand|continue|outpaint)\b|\bshow (more|what'?s|what is)\b|"
                          r"\bmore (on|at|to) the\b|\bsee more\b")
_DIRECTIONS = (("left", r"\bleft\b"), ("right", r"\bright\b"), ("up", r"\b(up|upwards?|above|top|sky)\b"),
               ("down", r"\b(down|downwards?|below|bottom|ground)\b"))
_SQUARE = re.compile(r"^(make (it )?square|square (it|versions?|crop|format|please)|square|(outpaint|extend|expand|"
                     r"fill) (it )?(to|into) (a )?square|make (it )?(a )?square (image|picture|version|format))$")
_REGION_VERB = re.compile(r"\b(change|redo|vary|fix|regenerate|repaint|redraw|rework|weird|wrong|ugly|"
                          r"broken|messed|replace|inpaint|vary region)\b")
_CELLS = (("top left", "0"), ("top right", "2"), ("bottom left", "6"), ("bottom right", "8"),
          ("upper left", "0"), ("upper right", "2"), ("lower left", "6"), ("lower right", "8"),
          ("center", "4"), ("middle", "4"), ("top", "0+1+2"), ("bottom", "6+7+8"), ("left", "0+3+6"),
          ("right", "2+5+8"))
_GRID = {"top left": 1, "top right": 2, "bottom left": 3, "bottom right": 4}
_PICK_PREFIX = re.compile(r"^(give me|i like|i'll take|i will take|pick|choose|go with|keep|i want|select|"
                          r"use|that's|thats|love)\s+")
_PICK_SUFFIX = re.compile(r"\s+(is|looks|was|it is)( the)? (best|good|great|nicest|perfect|it|the one|my favou?rite)$")
_VARIATIONS = re.compile(r"\b(variations?|vary|similar|more like|versions? of|riff on|remix|alternatives?)\b|^v\d$")
_UPSCALE = re.compile(r"\b(upscale[ds]?|upscaling|hires|higher res(olution)?|high res(olution)?|bigger resolution|"
                      r"more resolution|hd|4k|enhance|sharper|full size)\b")


def image_reference(text: str, count: int) -> int | None:
    """Which image the words name: "#3", "number 2", "the second", "the last", "u2", "v1", the grid corner."""
    for pattern in (r"#\s*(\d+)", r"\b(?:number|no|nr|image|img|pic)\.?\s*(\d+)\b", r"\b[uv](\d)\b"):
        if match := re.search(pattern, text):
            return int(match.group(1))
    for word, index in ORDINALS.items():
        if re.search(rf"\b{word}\b", text):
            return index
    if re.search(r"\b(last|final)\b", text):
        return count
    if count == 4:
        for corner, index in _GRID.items():
            if corner in text:
                return index
    if match := re.search(r"\b(\d)\b", text):
        return int(match.group(1))
    return None


def _check_image(image: int | None, context: TurnContext) -> tuple[int, str | None] | str:
    """The 1-based image, and a reading when it was chosen for the member; or why it can't be."""
    if image is None:
        if context.image_count > 1:
            return 1, "image 1 (say which, e.g. “of 2”)"
        return 1, None
    if not 1 <= image <= context.image_count:
        have = f"{context.image_count} image{'s' if context.image_count != 1 else ''}"
        return f"There is no image {image}: this result has {have}."
    return image, None


def _action(action: str, *, image: int | None = None, factor: float | None = None, direction: str | None = None,
            region: str | None = None, reading: str | None = None) -> Interpretation:
    interpretation = Interpretation(Kind.ACTION, action=action, image=image, factor=factor, direction=direction,
                                    region=region, reading=reading)
    return replace(interpretation, summary=describe_action(interpretation))


def _zoom(text: str) -> Interpretation:
    factor = 2.0
    if match := re.search(r"(\d+(?:\.\d+)?)\s*(?:x|×|times)?", text):
        factor = float(match.group(1))
    elif re.search(r"\b(a bit|a little|slightly|a tad|a touch|little|bit)\b", text):
        factor = 1.5
    if not ZOOM_RANGE[0] < factor <= ZOOM_RANGE[1]:
        return refuse(f"Zoom Out goes from {ZOOM_RANGE[0]:g}× to {ZOOM_RANGE[1]:g}×; got {factor:g}×.")
    return _action("zoom", factor=factor)


def _region(text: str) -> str | None:
    cells: list[int] = []
    rest = text
    for name, region in _CELLS:
        if re.search(rf"\b{name}\b", rest):
            cells += [int(cell) for cell in region.split("+")]
            rest = re.sub(rf"\b{name}\b", " ", rest)
    return region_text(cells) if cells else None


def _image_action(action: str, text: str, context: TurnContext) -> Interpretation:
    checked = _check_image(image_reference(text, context.image_count), context)
    if isinstance(checked, str):
        return refuse(checked)
    return _action(action, image=checked[0], reading=checked[1])


def read_action(text: str, context: TurnContext) -> Interpretation | None:
    if _REROLL.match(text) or (_REROLL_WORD.search(text) and set(re.findall(r"[a-z']+", text)) <= _REROLL_ONLY):
        return _action("reroll")
    if _ZOOM.search(text):
        return _zoom(text)
    parent = context.parent
    if _SQUARE.match(text):
        shapes = context.vocabulary.shapes if context.vocabulary else ()
        if parent.width is not None and parent.width == parent.height:
            return None if "square" in shapes else refuse("It is square already.")
        return _action("square", reading="Make Square (the picture); for the shape, say “a square instead”"
                       if "square" in shapes else None)
    if _PAN_TRIGGER.search(text):
        for direction, pattern in _DIRECTIONS:
            if re.search(pattern, text):
                return _action("pan", direction=direction)
    if _REGION_VERB.search(text) and (region := _region(text)) is not None:
        return _action("vary_region", region=region)
    bare = _PICK_SUFFIX.sub("", _PICK_PREFIX.sub("", text))
    bare = re.sub(r"\b(the|that|this|one|image|images|please|pic|version)\b", " ", bare)
    if context.image_count > 1 and re.fullmatch(
            r"\s*(#\s*\d|(number|no|nr)\.?\s*\d|\d|u\d|" + "|".join([*ORDINALS, "last", *_GRID]) + r")\s*", bare):
        return _image_action("pick", text, context)
    if _VARIATIONS.search(text):
        return _image_action("variations", text, context)
    if _UPSCALE.search(text) or (
            re.fullmatch(r"(make it |make |)(bigger|larger)", text)
            and not (context.vocabulary and context.vocabulary.sizes)):
        return _image_action("upscale", text, context)
    return None


def count_words(text: str) -> int | None:
    """"4 of them", "give me 2", "just one", "four images", "a grid of 4": the number of images asked for."""
    match = re.fullmatch(
        r"(?:give me |make |generate |do |show me |only |i want |render |let's have |how about )?"
        r"(?P<n>\d+|one|two|three|four|five|six|a couple|a pair)"
        r"(?: of (?:them|those|these|it)| (?:images?|versions?|variants?|options?|results?|at once|copies|takes?))?",
        text) or re.fullmatch(r"(?:make it |as |do )?a grid of (?P<n>\d+|four|two|three)(?: images)?", text)
    return number(match.group("n")) if match else None
