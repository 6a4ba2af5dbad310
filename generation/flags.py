"""Midjourney-style flags typed inside the prompt: "a red circle --ar 16:9 --seed 3 --no blue"."""

from __future__ import annotations

import re
from typing import Any

from .request import PARAMETERS, GenerationRequest, RequestError
from .samplers import SAMPLERS
from .sizes import size_for_aspect_ratio

# "--ar" is the one flag that is no request field (it sets width and height); the rest come from
# the parameter table, so a new parameter with a flag needs nothing here.
ASPECT_RATIO_FLAG = "--ar"
FLAG_PARAMETERS = {parameter.flag: parameter for parameter in PARAMETERS if parameter.flag}
FLAGS = (ASPECT_RATIO_FLAG, *FLAG_PARAMETERS)
_EXAMPLES = {
    "--ar": "--ar 16:9",
    "--seed": "--seed 42",
    "--no": "--no text, blur",
    "--steps": "--steps 20",
    "--cfg": "--cfg 7.5",
    "--sampler": "--sampler Euler a",
    "--count": "--count 4",
    "--tile": "--tile",
}
# "--repeat N" asks for N jobs (the command level, like {a, b} permutations): see expand_prompt.
REPEAT_FLAG = "--repeat"
# Most jobs one command may turn into (permutations × repeats); the queue caps still apply to each.
MAX_PROMPT_VARIANTS = 10
# The widest shape --ar accepts (Midjourney's own range is about the same).
MAX_ASPECT = 4


def _example(flag: str) -> str:
    return _EXAMPLES.get(flag, f"{flag} <value>")


def _is_flag(word: str) -> bool:
    return word.startswith("--") and len(word) > 2 and word[2].isalpha()


def _normalise_dashes(text: str) -> str:
    # Phones and Discord's desktop client often turn "--" into an em dash; Midjourney accepts both.
    # Only an em dash that starts a word ("—seed 5") is a flag; "a cat — sleeping" keeps its dash.
    return re.sub(r"(?<!\S)\u2014(?=[A-Za-z])", "--", text)


def _whole_number(flag: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"{flag} needs a whole number, got {value!r} (e.g. {_example(flag)}).") from None


def _aspect_ratio(value: str) -> tuple[int, int]:
    parts = value.split(":")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise RequestError(f"--ar needs two positive whole numbers like 16:9, got {value!r}.")
    width, height = int(parts[0]), int(parts[1])
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise RequestError(f"--ar {value} is too extreme; use a ratio between 1:{MAX_ASPECT} and {MAX_ASPECT}:1.")
    return width, height


_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d"}  # opening -> closing (phones type curly quotes)


def _unquote(value: str) -> str:
    """`--sampler "DPM++ 2M Karras"`: quotes group words for the reader; they are not part of the value."""
    if len(value) >= 2 and _QUOTES.get(value[0]) == value[-1]:
        return value[1:-1].strip()
    return value


def parse_prompt_flags(text: str, *, base_size: int = 64, multiple: int = 8) -> tuple[str, dict[str, Any]]:
    """Split inline flags off a prompt.

    Returns the prompt without flags and the request fields they set, e.g.
    "a fox --ar 2:1 --no blur" -> ("a fox", {"width": 88, "height": 48, "negative_prompt": "blur"})
    with base_size=64: --ar keeps the area of a base_size x base_size image (use the model's native size).
    Values are only parsed here; their ranges are checked with the rest of the request.
    An unknown flag or a flag given twice is a RequestError, never prompt text.
    """
    prompt_words: list[str] = []
    flags: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in _normalise_dashes(text).split():
        if _is_flag(word):
            flag = word.lower()
            if flag not in FLAGS:
                raise RequestError(f"Unknown flag {word}. Available flags: {', '.join((*FLAGS, REPEAT_FLAG))}.")
            if flag in flags:
                raise RequestError(f"{flag} is given twice; use it once.")
            current = flags[flag] = []
            if flag in FLAG_PARAMETERS and FLAG_PARAMETERS[flag].kind == "bool":
                current = None  # a switch: the words after it are prompt text again
        elif current is not None:
            current.append(word)
        else:
            prompt_words.append(word)

    fields: dict[str, Any] = {}
    for flag, words in flags.items():
        value = _unquote(" ".join(words))
        if flag in FLAG_PARAMETERS and FLAG_PARAMETERS[flag].kind == "bool":
            fields[FLAG_PARAMETERS[flag].field] = True
            continue
        if not value:
            raise RequestError(f"{flag} needs a value, e.g. {_example(flag)}.")
        if flag == ASPECT_RATIO_FLAG:
            if len(words) > 1:
                raise RequestError(f"{flag} takes one value, got {value!r} (e.g. {_example(flag)}).")
            fields["width"], fields["height"] = size_for_aspect_ratio(*_aspect_ratio(value), base_size, multiple)
            continue
        parameter = FLAG_PARAMETERS[flag]
        if parameter.kind in ("int", "float") and len(words) > 1:
            raise RequestError(
                f"{flag} takes one value, got {value!r}; put prompt text before the flags (e.g. {_example(flag)})."
            )
        fields[parameter.field] = _flag_value(flag, parameter.kind, value)
    return " ".join(prompt_words), fields


def _flag_value(flag: str, kind: str, value: str) -> Any:
    if kind == "int":
        return _whole_number(flag, value)
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise RequestError(f"{flag} needs a number, got {value!r} (e.g. {_example(flag)}).") from None
    if flag == "--sampler":
        # Typed on a phone, "euler a" means "Euler a"; an unknown name is left for validation to report.
        return next((name for name in SAMPLERS if name.lower() == value.lower()), value)
    return value


def expand_prompt(text: str) -> list[str]:
    """The prompts one command asks for: `{a, b}` permutations, each `--repeat N` times, in order.

    "a {red, blue} {circle, square} --repeat 2" -> 8 prompts (each still with its other --flags).
    Braces do not nest; a literal brace is not possible (prompts rarely need one). RequestError when
    the syntax is broken or the command would make more than MAX_PROMPT_VARIANTS jobs.
    """
    words = _normalise_dashes(text).split()
    repeat = 1
    if REPEAT_FLAG in (word.lower() for word in words):
        at = [word.lower() for word in words].index(REPEAT_FLAG)
        value = words[at + 1] if at + 1 < len(words) else ""
        if not value.isdigit() or not 1 <= int(value) <= MAX_PROMPT_VARIANTS:
            raise RequestError(f"--repeat needs a whole number from 1 to {MAX_PROMPT_VARIANTS}, e.g. --repeat 4.")
        repeat = int(value)
        del words[at:at + 2]
        if REPEAT_FLAG in (word.lower() for word in words):
            raise RequestError("--repeat is given twice; use it once.")
    variants = [""]
    for literal, options in _brace_parts(" ".join(words)):
        choices = [option.strip() for option in options.split(",")] if options is not None else [""]
        if options is not None and not all(choices):
            raise RequestError("Each {…} needs choices separated by commas, e.g. a {red, blue} circle.")
        variants = [variant + literal + choice for variant in variants for choice in choices]
        if len(variants) * repeat > MAX_PROMPT_VARIANTS:
            raise RequestError(
                f"That makes more than {MAX_PROMPT_VARIANTS} jobs; use fewer {{…}} choices or a smaller --repeat.")
    return [" ".join(variant.split()) for variant in variants for _ in range(repeat)]


def _brace_parts(prompt: str) -> list[tuple[str, str | None]]:
    """("text before", "a, b") for each {…}, then ("the rest", None)."""
    parts: list[tuple[str, str | None]] = []
    rest = prompt
    while (match := re.search(r"\{([^{}]*)\}", rest)) is not None:
        literal = rest[:match.start()]
        if "{" in literal or "}" in literal:
            raise RequestError("Permutations need matching braces, e.g. a {red, blue} circle (no nesting).")
        parts.append((literal, match.group(1)))
        rest = rest[match.end():]
    if "{" in rest or "}" in rest:
        raise RequestError("Permutations need matching braces, e.g. a {red, blue} circle (no nesting).")
    parts.append((rest, None))
    return parts


def apply_prompt_flags(request: GenerationRequest, *, base_size: int = 64) -> GenerationRequest:
    """Move inline flags from `request.prompt` into the request's fields.

    An inline flag wins over the same option typed into a slash-command field: the flag is the more
    specific, later-typed intent (someone who types "--seed 3" into the prompt means seed 3).
    """
    prompt, fields = parse_prompt_flags(request.prompt, base_size=base_size)
    return request.replace(prompt=prompt, **fields)
