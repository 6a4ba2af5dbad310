"""What a member's words in a turn mean: one typed reading of them, and the context they are read in.

A turn is read against its parent (the result it answers): the parent's request, how many images it
has, the model's declared vocabulary (None for free-text models) and whether that model edits by
instruction. The reading is one of: an action on the parent (routed by the bot to the existing button
paths), a parameter change or a prompt change with the seed kept (`apply` makes the next request), a new
prompt, or a refusal with a short reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..editing import CELL_NAMES, parse_region
from ..request import PARAMETERS, GenerationRequest, Limits
from ..vocabulary import Vocabulary


class Kind(str, Enum):
    ACTION = "action"  # on the parent: routed to the button paths
    PARAMETER = "param"  # request fields changed, seed kept
    PROMPT = "prompt"  # the prompt changed (or an instruction edit), seed kept
    NEW = "new"  # a new prompt
    REFUSE = "refuse"  # nothing to do: `reason` says why


ACTIONS = ("reroll", "variations", "pick", "upscale", "zoom", "pan", "square", "vary_region")
PROMPT_EDITS = ("replace", "add", "remove", "instruction")
# A turn may change the parameters a member may keep as their own default (negative prompt, size, steps,
# guidance, sampler, count): derived from the one declaration. Width and height change together, as an aspect.
TURN_PARAMETERS = tuple(parameter for parameter in PARAMETERS if parameter.member_default)
_PARAMETER_NAMES = {"width": "aspect", "height": "aspect", "negative_prompt": "negative"}


def parameter_name(field_name: str) -> str:
    """The short name of a changed request field: "aspect", "count", "steps", "guidance", "sampler", "negative"."""
    if field_name in _PARAMETER_NAMES:
        return _PARAMETER_NAMES[field_name]
    return next(parameter.option for parameter in PARAMETERS if parameter.field == field_name)


@dataclass(frozen=True)
class TurnContext:
    """The words of a turn and what they are read against."""

    words: str
    parent: GenerationRequest
    image_count: int = 1
    vocabulary: Vocabulary | None = None
    edits_by_instruction: bool = False  # the parent's model edits an image by instruction
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Interpretation:
    kind: Kind
    action: str | None = None  # one of ACTIONS
    image: int | None = None  # 1-based image of the parent (variations, pick, upscale)
    factor: float | None = None  # zoom out
    direction: str | None = None  # pan: left, right, up, down
    region: str | None = None  # vary region: cells of the 3×3 grid, "0+1"
    changes: dict[str, Any] = field(default_factory=dict)  # GenerationRequest field -> new value
    prompt_edit: str | None = None  # one of PROMPT_EDITS
    instruction: str | None = None  # an instruction edit: the words sent to the model
    reason: str | None = None  # a refusal: why, in a short sentence
    reading: str | None = None  # the reading chosen where the words allow more than one
    fallback: str | None = None  # the LLM's answer was not used, and why: the rules answered
    summary: str = ""  # one line for people, e.g. "→ a green circle on a blue background · seed 7 kept"

    @property
    def category(self) -> str:
        """"action/zoom", "param/steps", "prompt/replace", "prompt/new", "refuse"."""
        if self.kind is Kind.ACTION:
            return f"action/{self.action}"
        if self.kind is Kind.PARAMETER:
            return "param/" + (parameter_name(next(iter(self.changes))) if self.changes else "none")
        if self.kind is Kind.PROMPT:
            return f"prompt/{self.prompt_edit}"
        if self.kind is Kind.NEW:
            return "prompt/new"
        return "refuse"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (stored with the generation as the turn's reading)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["kind"] = self.kind.value
        return {name: value for name, value in data.items() if value not in (None, {}, "")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Interpretation:
        values = {name: data[name] for name in _FIELDS if name in data}
        values["kind"] = Kind(data["kind"])
        return cls(**values)


_FIELDS = ("kind", "action", "image", "factor", "direction", "region", "changes", "prompt_edit", "instruction",
           "reason", "reading", "fallback", "summary")


def refuse(reason: str) -> Interpretation:
    return Interpretation(Kind.REFUSE, reason=reason, summary=f"✋ {reason}")


def region_label(region: str) -> str:
    return ", ".join(CELL_NAMES[cell] for cell in parse_region(region))


def _seed_kept(parent: GenerationRequest) -> str:
    return f" · seed {parent.seed} kept" if parent.seed is not None else " · seed kept"


def describe_action(interpretation: Interpretation) -> str:
    action, image = interpretation.action, interpretation.image
    if action == "reroll":
        return "→ Reroll (new seed)"
    if action == "variations":
        return f"→ Variations of image {image}"
    if action == "pick":
        return f"→ Image {image} on its own"
    if action == "upscale":
        return f"→ Upscale image {image} 2×"
    if action == "zoom":
        return f"→ Zoom Out {interpretation.factor:g}×"
    if action == "pan":
        return f"→ Pan {interpretation.direction}"
    if action == "square":
        return "→ Make Square"
    return f"→ Vary (Region): {region_label(interpretation.region or '')}"


def describe_new(changes: dict[str, Any]) -> str:
    """"→ new picture: a dog on a skateboard · 416×624" (a new prompt and the flags typed with it)."""
    sizes = f" · {changes['width']}×{changes['height']}" if "width" in changes else ""
    return f"→ new picture: {changes['prompt']}{sizes}"


def describe_changes(changes: dict[str, Any], parent: GenerationRequest, *, prompt_edit: str | None = None,
                     instruction: str | None = None) -> str:
    """The one-line summary of a parameter or prompt change (the seed is kept for both)."""
    if instruction is not None:
        return f"→ edit: {instruction}{_seed_kept(parent)}"
    parts: list[str] = []
    if "prompt" in changes:
        parts.append(str(changes["prompt"]))
    if "width" in changes:
        parts.append(f"{changes['width']}×{changes['height']}")
    for name, value in changes.items():
        if name in ("prompt", "width", "height"):
            continue
        if name == "negative_prompt":
            parts.append(f"without {value}" if value else "no negative prompt")
        elif name == "count":
            parts.append(f"{value} image{'s' if value != 1 else ''}")
        elif name == "num_inference_steps":
            parts.append(f"{value} steps")
        elif name == "guidance_scale":
            parts.append(f"guidance {value:g}")
        else:
            parts.append(f"{parameter_name(name)} {value}")
    return "→ " + " · ".join(parts) + _seed_kept(parent)
