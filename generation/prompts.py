"""A1111 prompt syntax: `<lora:name:0.8>` tags and attention weights `(word:1.3)`, `(word)`, `[word]`.

    a (red:1.3) circle, [blurry] <lora:paper-cut:0.7>

- `<lora:NAME>` or `<lora:NAME:WEIGHT>` (weight 1 when left out) asks for a LoRA from LORA_DIR. The tags
  stay in the recorded prompt (as in A1111), so a reproduced prompt asks for the same LoRAs; they are
  removed before the text is encoded.
- `(text)` multiplies attention by 1.1, `[text]` divides it by 1.1, `(text:1.3)` sets 1.3; brackets nest
  and multiply. `\\(` and `\\)` are literal brackets. This is A1111's `parse_prompt_attention`, without BREAK.

Nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .request import RequestError

LORA_TAG = re.compile(r"<lora:([^:<>]+?)(?::\s*([+-]?(?:\d+\.?\d*|\.\d+)))?\s*>", re.IGNORECASE)
_ANY_LORA_TAG = re.compile(r"<lora:[^>]*>", re.IGNORECASE)

_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
ROUND = 1.1
SQUARE = 1 / 1.1


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float


class PromptSyntaxError(RequestError):
    """A malformed tag; the message says how to write it."""


def lora_tags(prompt: str) -> list[LoraTag]:
    """The `<lora:name:weight>` tags of a prompt, in order (a name given twice: the last weight wins)."""
    found: dict[str, float] = {}
    for match in _ANY_LORA_TAG.finditer(prompt):
        parsed = LORA_TAG.fullmatch(match.group(0))
        if parsed is None:
            raise PromptSyntaxError(f"{match.group(0)} is not a LoRA tag; write <lora:name> or <lora:name:0.8>.")
        name = parsed.group(1).strip()
        found.pop(name, None)
        found[name] = float(parsed.group(2)) if parsed.group(2) is not None else 1.0
    return [LoraTag(name, weight) for name, weight in found.items()]


def strip_lora_tags(prompt: str) -> str:
    """The prompt without its LoRA tags (and without the spaces they leave); unchanged without tags."""
    if not _ANY_LORA_TAG.search(prompt):
        return prompt
    text = _ANY_LORA_TAG.sub(" ", prompt)
    return re.sub(r"\s{2,}", " ", text).strip(" ,")


def parse_attention(text: str) -> list[tuple[str, float]]:
    """A1111's attention parser: [(text, weight), ...] with runs of equal weight merged."""
    result: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for position in range(start, len(result)):
            result[position][1] *= multiplier

    for match in _ATTENTION.finditer(text):
        chunk, weight = match.group(0), match.group(1)
        if chunk.startswith("\\"):
            result.append([chunk[1:], 1.0])
        elif chunk == "(":
            round_brackets.append(len(result))
        elif chunk == "[":
            square_brackets.append(len(result))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif chunk == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND)
        elif chunk == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE)
        else:
            result.append([chunk, 1.0])
    for position in round_brackets:
        multiply_range(position, ROUND)
    for position in square_brackets:
        multiply_range(position, SQUARE)
    merged: list[list] = []
    for chunk, weight in result:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += chunk
        else:
            merged.append([chunk, weight])
    return [(chunk, weight) for chunk, weight in merged] or [("", 1.0)]


def has_weights(text: str) -> bool:
    """Whether the text asks for any attention weight other than 1."""
    return any(weight != 1.0 for _, weight in parse_attention(text))


def plain_text(text: str) -> str:
    """What the text encoder reads: brackets and weights removed, escapes resolved."""
    return "".join(chunk for chunk, _ in parse_attention(text))


@dataclass(frozen=True)
class PromptParts:
    """A prompt split into what the renderer needs."""

    text: str  # without LoRA tags, syntax intact
    loras: tuple[LoraTag, ...]
    weighted: bool  # any attention weight other than 1

    @property
    def plain(self) -> str:
        return plain_text(self.text)


def split_prompt(prompt: str) -> PromptParts:
    text = strip_lora_tags(prompt)
    return PromptParts(text, tuple(lora_tags(prompt)), has_weights(text))


def encoded_text(prompt: str) -> str:
    """The text the encoder reads for a prompt: no LoRA tags, no weight syntax (for the length check)."""
    return plain_text(strip_lora_tags(prompt))
