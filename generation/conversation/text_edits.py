"""Prompt changes for free-text models (SD, SDXL, Flux …): sensible edits of the words of the prompt.

- "make it night" replaces a word of the same kind ("sunset" → "night"; times of day, seasons,
  weather, media/styles, colours) or, when the prompt has none, appends it;
- "a dog instead of the cat", "replace X with Y", "change X to Y" swap words;
- "with a moon", "add a dog" add a phrase after the prompt's subject;
- "without the moon" removes the phrase (with its "with"/"on a"...) and adds it to the negative prompt;
  a thing the prompt never had goes to the negative prompt alone (a parameter change).
"""

from __future__ import annotations

import re

from .interpretation import Interpretation, Kind, TurnContext, describe_changes, refuse
from .words import with_article

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "brown", "gray",
           "gold", "golden", "silver", "teal", "cyan", "magenta", "violet", "beige")
# Words of one kind replace each other: a picture is at one time of day, in one season, in one medium.
GROUPS: dict[str, tuple[str, ...]] = {
    "time": ("golden hour", "night", "day", "daytime", "sunset", "sunrise", "dawn", "dusk", "morning",
             "evening", "noon", "midday", "midnight", "twilight"),
    "season": ("winter", "summer", "autumn", "fall", "spring"),
    "weather": ("rainy", "snowy", "foggy", "stormy", "sunny", "cloudy"),
    "medium": ("oil painting", "watercolor", "photograph", "photo", "photorealistic", "anime", "cartoon",
               "pixel art", "pencil sketch", "sketch", "drawing", "3d render", "digital art", "comic",
               "illustration", "line art", "charcoal", "pastel", "ukiyo-e", "cyberpunk", "low poly", "claymation"),
}
GROUP_WORDS = tuple(word for words in GROUPS.values() for word in words)
VAGUE = frozenset(("better", "nicer", "good", "great", "prettier", "cooler", "more beautiful", "perfect",
                   "improve it", "improve", "fix it", "different", "more interesting", "awesome"))
_CONNECTORS = r"(?:with|wearing|holding|and|in|on|at|under|over|near|by|of)"
_ARTICLES = r"(?:a|an|the|some|any)"


def _contains(prompt: str, phrase: str) -> re.Match[str] | None:
    """Where `phrase` (or its singular/plural) stands in the prompt as whole words."""
    for form in dict.fromkeys((phrase, phrase.rstrip("s"), phrase + "s")):
        match = re.search(rf"\b{re.escape(form)}\b", prompt, flags=re.IGNORECASE)
        if form and match:
            return match
    return None


def _tidy(prompt: str) -> str:
    prompt = re.sub(r"\s+,", ",", " ".join(prompt.split()))
    prompt = re.sub(r",\s*,+", ",", prompt)
    return with_article(prompt.strip(" ,"))


def strip_article(phrase: str) -> str:
    return re.sub(rf"^{_ARTICLES}\s+", "", phrase.strip())


def remove_phrase(prompt: str, phrase: str) -> str | None:
    """The prompt without `phrase` and the little words that tied it in ("with a", "on a"); None if absent."""
    phrase = strip_article(phrase)
    match = _contains(prompt, phrase)
    if match is None:
        return None
    found = re.escape(match.group(0))
    for pattern in (rf"\s*\b{_CONNECTORS}\s+(?:{_ARTICLES}\s+)?{found}\b", rf"\b(?:{_ARTICLES}\s+)?{found}\b"):
        candidate = re.sub(pattern, "", prompt, count=1, flags=re.IGNORECASE)
        if candidate != prompt and candidate.strip(" ,"):
            return _tidy(candidate)
    return None


def add_phrase(prompt: str, phrase: str) -> str:
    """`phrase` after the subject (the first comma part), before style words: "a castle with a moon, oil painting"."""
    phrase = phrase.strip()
    if not re.match(rf"^{_CONNECTORS}\b", phrase):
        phrase = "with " + phrase
    head, comma, rest = prompt.partition(",")
    return _tidy(f"{head} {phrase}{comma}{rest}")


def replace_kind(prompt: str, term: str) -> tuple[str, str]:
    """The prompt with `term` in place of the word of its kind, or appended; and "replace"/"add"."""
    kind = next(name for name, words in GROUPS.items() if term in words)
    for word in sorted(GROUPS[kind], key=len, reverse=True):
        match = _contains(prompt, word)
        if match:
            return _tidy(prompt[:match.start()] + term + prompt[match.end():]), "replace"
    return _tidy(f"{prompt}, {term}"), "replace"


def recolour(prompt: str, colour: str, noun: str | None = None) -> str:
    """`colour` on `noun` (or on the subject): an existing colour word replaced, else put in front of it."""
    if noun is not None and (match := _contains(prompt, noun)):
        before = prompt[:match.start()]
        previous = re.search(rf"\b({'|'.join(COLOURS)})\s+$", before)
        if previous:
            before = before[:previous.start()]
        return _tidy(f"{before}{colour} {prompt[match.start():]}")
    for known in COLOURS:
        if (match := _contains(prompt, known)) is not None:
            return _tidy(prompt[:match.start()] + colour + prompt[match.end():])
    article = re.match(rf"^\s*{_ARTICLES}\s+", prompt, flags=re.IGNORECASE)
    if article:
        return _tidy(f"{prompt[:article.end()]}{colour} {prompt[article.end():]}")
    return _tidy(f"{colour} {prompt}")


def _result(context: TurnContext, prompt: str, edit: str, negative: str | None = None,
            reading: str | None = None) -> Interpretation:
    if prompt == context.parent.prompt and negative is None:
        return refuse("That's what the prompt already says; say what should change.")
    changes: dict[str, object] = {"prompt": prompt}
    if negative is not None:
        changes["negative_prompt"] = negative
    return Interpretation(Kind.PROMPT, prompt_edit=edit, changes=changes, reading=reading,
                          summary=describe_changes(changes, context.parent))


def add_negative(current: str, items: list[str]) -> str:
    kept = [part.strip() for part in current.split(",") if part.strip()]
    return ", ".join(dict.fromkeys([*kept, *items]))


def remove_things(text_items: list[str], context: TurnContext) -> Interpretation:
    """"without X": X removed from the prompt (and kept out by the negative prompt), or only kept out."""
    prompt, removed = context.parent.prompt, []
    for item in text_items:
        changed = remove_phrase(prompt, item)
        if changed is not None:
            prompt = changed
            removed.append(item)
    negative = add_negative(context.parent.negative_prompt, [strip_article(item) for item in text_items])
    if removed:
        return _result(context, prompt, "remove", negative)
    changes = {"negative_prompt": negative}
    return Interpretation(Kind.PARAMETER, changes=changes, summary=describe_changes(changes, context.parent))


_SWAPS = (
    re.compile(r"^(?:replace|swap|switch) (?P<old>.+?) (?:with|for|by) (?P<new>.+)$"),
    re.compile(r"^(?:change|turn|make) (?P<old>.+?) (?:to|into) (?P<new>.+)$"),
    re.compile(r"^(?P<new>.+?) instead of (?P<old>.+)$"),
)
_ADD = re.compile(r"^(?:add|also add|also with|with|and|plus|include|put|throw in|also|"
                  r"give (?:him|her|it|them|the \w+))\s+(?P<what>.+?)"
                  r"(?:\s+(?:on (?:him|her|it|them|top)|in there|too|as well|also))?$")
_MAKE = re.compile(r"^(?:make it look like|make it look|make it into|make it in|make it|make them|turn it into|"
                   r"in the style of|do it as|do it in|redo it as|as|in|now|but)\s+(?P<what>.+)$")
_MAKE_NOUN = re.compile(r"^make (?:the|his|her|its) (?P<noun>[a-z ]+?) (?P<colour>[a-z]+)$")


def _term(what: str) -> str | None:
    """A word of a kind (time, season, medium …) named in "night", "a watercolor", "anime style"."""
    what = re.sub(r"^(?:in|as|like)\s+", "", strip_article(what))
    what = re.sub(r"\s+(?:style|version|look|vibes?|mode|theme|time)$", "", strip_article(what))
    return what if what in GROUP_WORDS else None


def edit_text(text: str, context: TurnContext) -> Interpretation | None:
    """The reading of `text` as a change of a free-text prompt; None when it reads as no prompt change."""
    prompt = context.parent.prompt
    made = _MAKE.match(text)
    what = made.group("what") if made else text
    if what in VAGUE:
        return refuse("What should change? e.g. “make it night”, “with a moon”, “without the text”, “wider”.")
    if match := _MAKE_NOUN.match(text):
        if match.group("colour") in COLOURS and _contains(prompt, match.group("noun")):
            return _result(context, recolour(prompt, match.group("colour"), match.group("noun")), "replace")
    for swap in _SWAPS:
        if match := swap.match(text):
            old, new = strip_article(match.group("old")), strip_article(match.group("new"))
            found = _contains(prompt, old)
            if found:
                return _result(context, _tidy(prompt[:found.start()] + new + prompt[found.end():]), "replace")
    if match := _ADD.match(text):
        return _result(context, add_phrase(prompt, match.group("what")), "add")
    if (term := _term(what)) is not None:
        changed, edit = replace_kind(prompt, term)
        return _result(context, changed, edit)
    if what in COLOURS:
        return _result(context, recolour(prompt, what), "replace")
    if made and len(what.split()) <= 3:
        return _result(context, _tidy(f"{prompt}, {what}"), "replace", reading=f"added “{what}” to the prompt")
    return None
