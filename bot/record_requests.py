"""A `/imagine …` command line that reproduces a request (shown under results and in /history)."""

from __future__ import annotations

from typing import Any

from generation import PARAMETERS, GenerationRequest


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def reproduce_prompt(request: GenerationRequest) -> str:
    """What to paste into `/imagine prompt:` as is to render `request` again: its prompt and one inline flag
    per parameter that has one, derived from the parameter table.

    `--no` goes last (it takes every word up to the next flag); empty values and a count of 1 are left out.
    Parameters without a flag are `reproduce_options`.
    """
    flags: list[str] = []
    for parameter in PARAMETERS:
        value = getattr(request, parameter.field)
        if parameter.flag is None or value is None or value == "" or (parameter.field == "count" and value == 1):
            continue
        if parameter.kind == "bool":
            if value:
                flags.append(parameter.flag)
        else:
            flags.append(f"{parameter.flag} {format_value(value)}")
    flags.sort(key=lambda flag: flag.startswith("--no "))
    return " ".join([request.prompt, *flags])


def reproduce_options(request: GenerationRequest, *, with_init_image: bool = False) -> list[str]:
    """The /imagine options that `reproduce_prompt` cannot carry (no inline flag): `init_image`, `strength`.

    `with_init_image` marks a request whose init image was left out (kept as a file).
    """
    if request.init_image is None and not with_init_image:
        return []
    options = [f"{parameter.option}: {format_value(getattr(request, parameter.field))}" for parameter in PARAMETERS
               if parameter.flag is None and parameter.field != "prompt"
               and not (parameter.field == "strength" and request.edit_mode == "instruction")]  # edit by words
    return ["init_image: (the original picture)", *options]
