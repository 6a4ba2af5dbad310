"""Talking to the bot: a member's words in a turn read as one change of the parent result.

`interpret` is the entry point (the embedded rules, or an OpenAI-compatible model when configured, the
rules answering whenever it fails); `apply` turns a parameter or prompt change into the next request.
"""

from .apply import apply
from .interpretation import ACTIONS, PROMPT_EDITS, Interpretation, Kind, TurnContext
from .llm import InterpreterConfig, interpret, interpret_llm
from .rules import interpret_rules

__all__ = ["ACTIONS", "PROMPT_EDITS", "Interpretation", "InterpreterConfig", "Kind", "TurnContext", "apply",
           "interpret", "interpret_llm", "interpret_rules"]
