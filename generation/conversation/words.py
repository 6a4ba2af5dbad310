"""Reading chat text: lower case, politeness dropped, typos mended against the words that matter, numbers.

Typos are mended only towards the interpreter's own keywords and the model's vocabulary: a word one
adjacent swap away ("agian", "sqaure") or a close match of at least four letters ("gren", "eular"). A word
of the parent's prompt is never "mended": it is what the member's prompt says.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# Chat shorthand and well-known slips, written as people type them.
SHORTHAND = {"u": "you", "ur": "your", "pls": "please", "plz": "please", "pic": "image", "pics": "images",
             "img": "image", "imgs": "images", "picture": "image", "pictures": "images", "ad": "add",
             "centre": "center", "colour": "color", "grey": "gray", "nighttime": "night", "night-time": "night",
             "watercolour": "watercolor", "gimme": "give me", "lemme": "let me", "thx": "thanks", "ty": "thanks",
             "upres": "upscale", "re-roll": "reroll", "hi-res": "hires", "hi res": "hires"}
# Filler that never changes what a turn means.
_FILLER = re.compile(
    r"\b(please|can you|could you|would you|will you|i want|i'd like|i would like|let me have|just|now|"
    r"maybe|actually|kindly|hey|ok|okay|lol|haha|bot)\b|[!]+"
)
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "a couple": 2, "a pair": 2, "single": 1, "both": 2}
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "fifth": 5, "5th": 5, "sixth": 6, "6th": 6}


def normalise(text: str) -> str:
    """Lower case, curly quotes straightened, shorthand spelled out, spaces collapsed."""
    text = text.lower().replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    words = [SHORTHAND.get(word, word) for word in text.split()]
    return " ".join(words)


def drop_filler(text: str) -> str:
    text = _FILLER.sub(" ", text)
    text = re.sub(r"\b(make|turn|render) (this|that)\b", r"\1 it", text)  # "make this square" = "make it square"
    text = re.sub(r"\s+([,.?])", r"\1", text)
    return " ".join(text.split()).strip(" ,.")


# Everyday words a slip-mender must leave alone although they are close to a keyword ("back" ~ "black").
COMMON = frozenset(("back", "bit", "more", "less", "make", "take", "like", "look", "much", "same", "some", "then",
                    "them", "with", "this", "that", "what", "just", "also", "very", "well", "both", "side", "time",
                    "sure", "want", "need", "have", "lower", "scale", "blur", "tree", "trees", "three", "here", "there",
                    "where", "gone", "done", "cute", "lake", "cake", "road", "ride", "wider", "wide", "rain",
                    "lens", "step", "tone", "tones", "generate", "create", "batch", "dark", "darker", "light", "bright", "size", "fill", "film"))


def _one_swap(word: str, keyword: str) -> bool:
    if len(word) != len(keyword) or word == keyword:
        return False
    diffs = [i for i, (a, b) in enumerate(zip(word, keyword)) if a != b]
    return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and word[diffs[0]] == keyword[diffs[1]] \
        and word[diffs[1]] == keyword[diffs[0]]


def mend_typos(text: str, keywords: Iterable[str], protected: Iterable[str] = ()) -> str:
    """Each word that is not a keyword, nor a protected word, mended to the keyword it is a slip of."""
    known = sorted(set(keywords))
    keep = set(known) | set(protected) | COMMON
    mended = []
    for token in re.split(r"(\W+)", text):
        if not token.isalpha() or token in keep or len(token) < 3:
            mended.append(token)
            continue
        swapped = next((keyword for keyword in known if _one_swap(token, keyword)), None)
        close = difflib.get_close_matches(token, known, n=1, cutoff=0.8) if len(token) >= 4 else []
        mended.append(swapped or (close[0] if close else token))
    return "".join(mended)


def number(text: str) -> int | None:
    """A whole number written as digits or as a word ("4", "four")."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    return NUMBER_WORDS.get(text)


def parse_ratio(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d{1,2})\s*[:x/]\s*(\d{1,2})", text.strip())
    if not match or not int(match.group(1)) or not int(match.group(2)):
        return None
    return int(match.group(1)), int(match.group(2))


def with_article(phrase: str) -> str:
    """"a orange circle" -> "an orange circle" (the article agrees with the word after it)."""
    return re.sub(r"\b(a|an) (\w)", lambda m: ("an " if m.group(2) in "aeiou" else "a ") + m.group(2), phrase)
