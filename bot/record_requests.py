"""A `/imagine …` command line that reproduces a request (shown under results and in /history)."""

from __future__ import annotations

from typing import Any

from generation import PARAMETERS, GenerationRequest


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def imagine_command_line(request: GenerationRequest, *, with_init_image: bool = False) -> str:
    """A `/imagine prompt: …` line that reproduces `request`, derived from the parameter table.

    Parameters with an inline flag go into the prompt (`--no` last: it takes every word up to the next
    flag); the others are written as the command's options (`width: 64`). Empty values and a count of 1
    are left out. `with_init_image` marks a request whose init image was left out (kept as a file).
    """
    flags: list[str] = []
    options: list[str] = []
    for parameter in PARAMETERS:
        value = getattr(request, parameter.field)
        if parameter.field == "prompt" or value is None or value == "" or (parameter.field == "count" and value == 1):
            continue
        if parameter.field == "strength" and (request.init_image is None and not with_init_image
                                              or request.edit_mode == "instruction"):  # an edit by words: no strength
            continue
        if parameter.kind == "bool":
            if value and parameter.flag is not None:
                flags.append(parameter.flag)
            elif value:
                options.append(f"{parameter.option}: True")
        elif parameter.flag is not None:
            flags.append(f"{parameter.flag} {format_value(value)}")
        else:
            options.append(f"{parameter.option}: {format_value(value)}")
    flags.sort(key=lambda flag: flag.startswith("--no "))
    line = " ".join([f"/imagine prompt: {request.prompt}", *flags, *options])
    if request.init_image is not None or with_init_image:
        line += " init_image: (the original picture)"
    return line
