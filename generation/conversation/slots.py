"""Prompts of a model with a declared vocabulary, read and written slot by slot in its grammar.

The grammar is the one in generation/vocabulary.py's docstring:

    object := article [size] colour shape [position]
    pair   := object " and " object | object " left of " object | object " above " object
    many   := count [size] colour shape "s" [position]
    prompt := (object | pair | many) " on " article colour " background"

`parse_scene` returns None for a prompt outside the grammar (the model was asked something else before):
such a prompt is edited as free text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..vocabulary import Vocabulary
from .words import with_article

JOINERS = (" and ", " left of ", " above ")


@dataclass(frozen=True)
class Thing:
    colour: str
    shape: str
    size: str | None = None
    position: str | None = None  # a position's name ("top left"), written as its phrase
    count: str | None = None  # "two": many of them (plural shape, no article)

    def words(self, vocabulary: Vocabulary) -> str:
        parts = [self.count or "a"]
        if self.size:
            parts.append(self.size)
        parts += [self.colour, self.shape + ("s" if self.count else "")]
        if self.position:
            parts.append(vocabulary.positions[self.position])
        return with_article(" ".join(parts))


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    background: str
    joiner: str = " and "

    def prompt(self, vocabulary: Vocabulary) -> str:
        head = self.joiner.join(thing.words(vocabulary) for thing in self.things)
        return f"{head} on {with_article('a ' + self.background)} background"

    def replace_thing(self, index: int, changes: dict[str, str]) -> Scene:
        things = list(self.things)
        things[index] = dataclasses.replace(things[index], **changes)
        return dataclasses.replace(self, things=tuple(things))


def _parse_thing(text: str, vocabulary: Vocabulary) -> Thing | None:
    position = None
    for name, phrase in sorted(vocabulary.positions.items(), key=lambda item: -len(item[1])):
        if text.endswith(" " + phrase):
            position, text = name, text[: -len(phrase) - 1]
            break
    words = text.split()
    if not words:
        return None
    count = None
    if words[0] in ("a", "an"):
        words = words[1:]
    elif words[0] in vocabulary.counts:
        count, words = words[0], words[1:]
    else:
        return None
    size = None
    if words and words[0] in vocabulary.sizes:
        size, words = words[0], words[1:]
    if len(words) != 2 or words[0] not in vocabulary.colours:
        return None
    shape = words[1][:-1] if count and words[1].endswith("s") else words[1]
    if shape not in vocabulary.shapes:
        return None
    return Thing(colour=words[0], shape=shape, size=size, position=position, count=count)


def parse_scene(prompt: str, vocabulary: Vocabulary) -> Scene | None:
    """The prompt's slots, or None when it is not written in the model's grammar."""
    text = " ".join(prompt.lower().split())
    head, separator, background = text.rpartition(" on ")
    words = background.split()
    if not separator or len(words) != 3 or words[0] not in ("a", "an") or words[2] != "background" \
            or words[1] not in vocabulary.colours:
        return None
    for joiner in JOINERS:
        if joiner in head:
            left, right = head.split(joiner, 1)
            things = (_parse_thing(left, vocabulary), _parse_thing(right, vocabulary))
            if things[0] is None or things[1] is None:
                return None
            return Scene((things[0], things[1]), words[1], joiner)
    thing = _parse_thing(head, vocabulary)
    return Scene((thing,), words[1]) if thing is not None else None
