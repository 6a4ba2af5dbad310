"""The one declaration of each user-facing request parameter.

Every `GenerationRequest` field a user can set carries a `Parameter` in its dataclass metadata:
its slash-command option, inline flag, label, description, bounds and whether a member may save
it as a default. The `/imagine` and `/settings` options, the stored member-default keys, the merge
of defaults and the reproduce line are all derived from `PARAMETERS`, so adding a parameter is one
request field (plus its storage column and the renderer code that uses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# A bound is a number, or the name of a `Limits` attribute the operator configures.
Bound = float | int | str
Kind = Literal["text", "int", "float", "choice", "bool"]  # a bool flag takes no value: "--tile"


@dataclass(frozen=True)
class Parameter:
    option: str  # the slash-command option name (field names follow diffusers, options follow users)
    label: str  # how embeds and /settings name it
    description: str  # the option's help text in Discord
    kind: Kind
    flag: str | None = None  # the inline prompt flag, e.g. "--steps"
    bounds: tuple[Bound, Bound] | None = None
    member_default: bool = False  # a member may keep their own default for it (/settings)
    command_option: bool = True  # /imagine offers it as an option
    field: str = ""  # filled in from the dataclass field it annotates

    def limits(self, limits: Any) -> tuple[float, float] | None:
        """The bounds with operator limits filled in (e.g. steps: 1..Limits.max_steps)."""
        if self.bounds is None:
            return None
        low, high = (getattr(limits, bound) if isinstance(bound, str) else bound for bound in self.bounds)
        return low, high


def param(option: str, label: str, description: str, kind: Kind, **options: Any) -> dict[str, Parameter]:
    """Dataclass-field metadata declaring a user-facing parameter."""
    return {"parameter": Parameter(option, label, description, kind, **options)}


def parameters_of(request_type: type) -> tuple[Parameter, ...]:
    """The declared parameters of a request dataclass, in field order, each knowing its field name."""
    import dataclasses

    found = []
    for field in dataclasses.fields(request_type):
        declared = field.metadata.get("parameter")
        if declared is not None:
            found.append(dataclasses.replace(declared, field=field.name))
    return tuple(found)
