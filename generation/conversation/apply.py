"""The next request of a turn: the parent's request with the interpreted change, seed kept."""

from __future__ import annotations

from ..request import GenerationRequest
from .interpretation import Interpretation, Kind

# A new picture starts fresh: no seed, no init image or edit, no variation, no negative prompt carried over.
_FRESH = {"seed": None, "negative_prompt": "", "init_image": None, "strength": 0.75, "variation_seed": None,
          "variation_strength": 0.0, "edit_mode": None, "edit_factor": None, "edit_direction": None,
          "edit_region": None}


def apply(interpretation: Interpretation, parent: GenerationRequest) -> GenerationRequest:
    """The request a parameter change, prompt change or new prompt asks for.

    The seed is kept for changes (the same picture, changed); a new prompt keeps only the model and the
    settings (size, steps, guidance, sampler, count). An instruction edit is the parent's request with the
    instruction as its prompt: the bot gives it the parent's image as its init image. Actions and
    refusals make no request here: actions go to the result buttons' paths (ValueError).
    """
    if interpretation.kind in (Kind.PARAMETER, Kind.PROMPT):
        return parent.replace(**interpretation.changes)
    if interpretation.kind is Kind.NEW:
        return parent.replace(**{**_FRESH, **interpretation.changes})
    raise ValueError(f"{interpretation.category} is routed by the bot, not applied to a request")
