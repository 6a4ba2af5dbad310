"""Turns that change a parameter of the parent, seed kept: aspect, count, steps, guidance, sampler.

Values are checked against the parameter's declared bounds (generation.PARAMETERS with the operator's
limits), so "steps 500" is refused here with the same bounds `/imagine` uses.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..flags import MAX_ASPECT, size_for_aspect_ratio
from ..request import PARAMETERS, GenerationRequest, Limits
from ..samplers import SAMPLERS
from .actions import count_words
from .interpretation import Interpretation, Kind, TurnContext, describe_changes, parameter_name, refuse
from .words import parse_ratio

_ASPECTS = {
    "widescreen": (16, 9), "cinematic": (16, 9), "ultrawide": (21, 9), "banner": (3, 1),
    "portrait": (2, 3), "vertical": (2, 3), "taller": (2, 3), "tall": (2, 3), "upright": (2, 3),
    "phone": (9, 16), "wallpaper": (9, 16), "story": (9, 16), "stories": (9, 16), "tiktok": (9, 16),
    "reels": (9, 16), "mobile": (9, 16), "desktop": (16, 9),
    "landscape": (3, 2), "horizontal": (3, 2), "wider": (3, 2), "wide": (3, 2), "sideways": (3, 2),
}
_ASPECT_FILLER = frozenset("make it same but in a an format orientation mode size aspect ratio version shot please "
                           "bit more little the as for image do go ar switch to".split())
_MORE = r"(more|increase|bump|higher|raise|up|add|extra|double)"
_LESS = r"(fewer|less|decrease|lower|reduce|faster|down|cut|quicker|drop)"
_STRICTER = re.compile(r"\b(follow|stick to|closer to|adhere to|listen to)\b.*\bprompt\b.*\b(more|closely|better|"
                       r"strictly)\b|\b(more|be) (strict|literal|faithful)\b|\bstricter\b")
_LOOSER = re.compile(r"\bless (strict|literal|faithful)\b|\bmore (creative|freedom|loose)\b|\blooser\b|"
                     r"\b(follow|stick to)\b.*\bprompt\b.*\bless\b")


def _bounds(field_name: str, limits: Limits) -> tuple[float, float]:
    parameter = next(parameter for parameter in PARAMETERS if parameter.field == field_name)
    bounds = parameter.limits(limits)
    assert bounds is not None
    return bounds


def change(context: TurnContext, changes: dict[str, Any], reading: str | None = None) -> Interpretation:
    """A parameter change, each value checked against its declared bounds (a refusal says which)."""
    for name, value in changes.items():
        if name == "sampler":
            if value not in SAMPLERS:
                return refuse(f"Unknown sampler {value!r}. Available samplers: {', '.join(SAMPLERS)}.")
            continue
        if name in ("negative_prompt", "prompt") or not isinstance(value, (int, float)):
            continue
        low, high = _bounds(name, context.limits)
        if not low <= value <= high:
            return refuse(f"{parameter_name(name)} must be from {low:g} to {high:g}; got {value:g}.")
    return Interpretation(Kind.PARAMETER, changes=changes, reading=reading,
                          summary=describe_changes(changes, context.parent))


def aspect_size(parent: GenerationRequest, ratio: tuple[int, int]) -> dict[str, int]:
    """Width and height in `ratio` with about the parent's area (its native size when unknown: 512)."""
    width, height = parent.width or 512, parent.height or 512
    return dict(zip(("width", "height"), size_for_aspect_ratio(*ratio, math.isqrt(width * height))))


def _aspect(text: str, parent: GenerationRequest) -> tuple[int, int] | None:
    words = [word for word in re.findall(r"[\w:]+", text) if word not in _ASPECT_FILLER]
    if not words:
        return None
    ratios = [parse_ratio(word) for word in words]
    if len(words) == 1 and ratios[0] is not None:
        return ratios[0]
    if not all(word in _ASPECTS for word in words):
        return None
    ratio = _ASPECTS[words[0]]
    width, height = parent.width or 1, parent.height or 1
    if words[0] in ("wider", "wide") and width > height:  # already landscape: wider still
        ratio = (16, 9) if width / height < 1.7 else (2, 1)
    if words[0] in ("taller", "tall") and height > width:
        ratio = (9, 16)
    return ratio


def _steps(text: str, parent: GenerationRequest, limits: Limits) -> int | None:
    if not re.search(r"\b(steps?|iterations)\b", text):
        return None
    if match := re.search(r"(\d+)", text):
        return int(match.group(1))
    current = parent.num_inference_steps
    if re.search(rf"\b{_MORE}\b", text):
        return min(int(limits.max_steps), max(current + 5, round(current * 1.5)))
    if re.search(rf"\b{_LESS}\b", text):
        return max(1, min(current - 5, round(current * 2 / 3)))
    return None


def _guidance(text: str, parent: GenerationRequest) -> float | None:
    current = parent.guidance_scale
    named = re.search(r"\b(cfg|guidance|cfg scale|guidance scale)\b", text)
    if named and (match := re.search(r"(\d+(?:\.\d+)?)", text)):
        return float(match.group(1))
    if (named and re.search(rf"\b{_MORE}\b", text)) or _STRICTER.search(text):
        return round(current + 2.0, 1)
    if (named and re.search(rf"\b{_LESS}\b", text)) or _LOOSER.search(text):
        return round(max(0.0, current - 2.0), 1)
    return None


def _sampler(text: str) -> str | None:
    for name in sorted(SAMPLERS, key=len, reverse=True):
        if re.search(rf"(?<![\w+]){re.escape(name.lower())}(?![\w+])", text):
            return name
    return None


def read_parameter(text: str, context: TurnContext) -> Interpretation | None:
    parent = context.parent
    if (ratio := _aspect(text, parent)) is not None:
        if max(ratio) > MAX_ASPECT * min(ratio):
            return refuse(f"{ratio[0]}:{ratio[1]} is too extreme; use between 1:{MAX_ASPECT} and {MAX_ASPECT}:1.")
        return change(context, aspect_size(parent, ratio))
    if (count := count_words(text)) is not None:
        return change(context, {"count": count})
    if (steps := _steps(text, parent, context.limits)) is not None:
        return change(context, {"num_inference_steps": steps})
    if (guidance := _guidance(text, parent)) is not None:
        return change(context, {"guidance_scale": guidance})
    if (sampler := _sampler(text)) is not None:
        return change(context, {"sampler": sampler})
    return None
