"""The embedded interpreter: deterministic rules over common chat phrasings and the model's vocabulary.

Order matters and goes from the most specific to the least: a fresh start ("new: …"), inline flags,
small talk and questions (refused), actions on the parent, parameter changes, negative/remove, prompt
changes (slot edits for a model with a vocabulary, free-text edits otherwise; an instruction edit for a
model that edits by instruction), and last a new prompt when the words describe a picture on their own.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from ..flags import parse_prompt_flags
from ..request import MAX_PROMPT_CHARS, RequestError
from ..samplers import SAMPLERS
from .actions import read_action
from .interpretation import Interpretation, Kind, TurnContext, describe_changes, describe_new, refuse
from .parameters import change, read_parameter
from .scene_edits import edit_scene
from .slots import parse_scene
from .text_edits import COLOURS, GROUP_WORDS, edit_text, remove_things
from .words import drop_filler, mend_typos, normalise

_NEW = re.compile(r"^\s*(?:new(?: prompt| one| image| picture)?|start over|start again|fresh start|"
                  r"forget (?:that|it|this)|something (?:completely |totally )?(?:different|else)|scratch that)"
                  r"\s*[:,\-–—]\s*(?P<rest>.+)$|^\s*(?:no,? )?(?:i meant|i said|i asked for)\s*[:,\-–—]?\s+(?P<meant>.+)$",
                  re.IGNORECASE | re.DOTALL)
_DRAW = re.compile(r"^\s*(?:(?:now |ok |okay |then )?(?:draw|paint|generate|create|render|imagine|make me|"
                   r"show me|give me|do|i want)\s+)(?P<rest>.+)$", re.IGNORECASE | re.DOTALL)
_SMALL_TALK = frozenset(("thanks", "thank you", "thanks a lot", "nice", "cool", "great", "awesome", "love it",
                         "wow", "hmm", "hmmm", "hm", "ok", "lol", "haha", "good bot", "perfect", "beautiful",
                         "amazing", "yes", "no", "yep", "nope", "hi", "hello", "nice one", "good", "neat"))
_QUESTION = re.compile(r"^(what|which|who|why|how|when|where|is|are|does|do you|did|was)\b")
_NEGATIVE = re.compile(r"^(?:no|without|avoid|remove|get rid of|lose|drop|take out|take off|take away|exclude|"
                       r"delete|minus|(?:don't|dont|do not) (?:add|include|show|want|put)(?: any)?|nothing with)"
                       r"\s+(?P<what>.+)$|^take (?P<taken>.+) (?:off|away|out)$")
_EDIT_VERB = re.compile(r"^(make|turn|add|remove|without|change|replace|put|give|take|get rid|no|with|swap|"
                        r"let|have|set|paint|colou?r|fill)\b")
_KEYWORDS = (
    "again another reroll redo retry upscale zoom out pan left right up down top bottom center middle corner side "
    "square variations variation vary similar versions pick steps guidance sampler remove without add instead "
    "background make change replace wider taller portrait landscape widescreen vertical horizontal more less fewer "
    "higher lower extend expand continue enhance regenerate repaint strict resolution").split()


def _keywords(context: TurnContext) -> set[str]:
    words = set(_KEYWORDS) | set(COLOURS)
    words |= {word for name in SAMPLERS for word in name.lower().split() if word.isalpha() and len(word) > 2}
    if context.vocabulary is not None:
        words |= context.vocabulary.words
    return words


def _new_prompt(prompt: str, context: TurnContext, flags: dict[str, Any], reading: str | None = None) -> Interpretation:
    prompt = " ".join(prompt.split()).strip(" ,.")
    if not prompt:
        return refuse("Say what to draw, e.g. “new: a lighthouse in a storm”.")
    if len(prompt) > MAX_PROMPT_CHARS:
        return refuse(f"That prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.")
    vocabulary = context.vocabulary
    if vocabulary is not None and parse_scene(prompt, vocabulary) is None:
        unknown = sorted({word for word in re.findall(r"[a-z]+", prompt.lower())} - vocabulary.words)
        if unknown:
            return refuse(f"This model can't draw “{' '.join(unknown)}”; it knows colours "
                          f"{', '.join(vocabulary.colours)} and shapes {', '.join(vocabulary.shapes)}.")
    changes = {"prompt": prompt, **flags}
    return Interpretation(Kind.NEW, changes=changes, reading=reading,
                          summary=describe_new(changes))


def _with_flags(interpretation: Interpretation, flags: dict[str, Any], context: TurnContext) -> Interpretation:
    if not flags or interpretation.kind in (Kind.REFUSE, Kind.NEW):
        return interpretation
    if interpretation.kind is Kind.ACTION:
        return replace(interpretation, reading="the --flags were left out: an action keeps the result's settings")
    changes = {**interpretation.changes, **flags}
    checked = change(context, {name: value for name, value in flags.items()})
    if checked.kind is Kind.REFUSE:
        return checked
    return replace(interpretation, changes=changes,
                   summary=describe_changes(changes, context.parent, instruction=interpretation.instruction))


def _instruction(text: str, context: TurnContext) -> Interpretation:
    instruction = " ".join(text.split()).strip(" ,.")
    return Interpretation(Kind.PROMPT, prompt_edit="instruction", instruction=instruction,
                          changes={"prompt": instruction},
                          summary=describe_changes({}, context.parent, instruction=instruction))


def interpret_rules(context: TurnContext) -> Interpretation:
    """The embedded reading of a turn: always an answer (a refusal says why when nothing fits)."""
    words = re.sub(r"<@[!&]?\d+>", " ", context.words).strip()  # a mention of the bot is no part of the words
    if not words:
        return refuse("There are no words to read; write what to change, e.g. “make it night” or “again”.")
    if len(words) > MAX_PROMPT_CHARS:
        return refuse(f"That message is {len(words)} characters; a turn reads at most {MAX_PROMPT_CHARS}.")
    parent = context.parent
    base = math.isqrt((parent.width or 512) * (parent.height or 512))
    if match := _NEW.match(words):
        try:
            prompt, flags = parse_prompt_flags(match.group("rest") or match.group("meant"), base_size=base)
        except RequestError as error:
            return refuse(str(error))
        drawn = _DRAW.match(prompt)
        return _new_prompt(drawn.group("rest") if drawn else prompt, context, flags)
    try:
        plain, flags = parse_prompt_flags(words, base_size=base)
    except RequestError as error:
        return refuse(str(error))
    # Words of the parent's prompt and the free-text kinds ("night", "snow") are never "mended".
    protected = [*normalise(parent.prompt).split(), *(word for term in GROUP_WORDS for word in term.split())]
    text = drop_filler(mend_typos(normalise(plain), _keywords(context), protected))
    if not text:
        if flags:
            return change(context, flags)
        return refuse("There are no words to read; write what to change, e.g. “make it night” or “again”.")
    return _with_flags(_read(text, plain, context, flags), flags, context)


def _read(text: str, plain: str, context: TurnContext, flags: dict[str, Any]) -> Interpretation:
    if text in _SMALL_TALK or not re.search(r"[a-z0-9]", text):
        return refuse("Nothing to change there. Reply with what to change, e.g. “make it night”, “again”, “wider”.")
    if _QUESTION.match(text) or text.endswith("?") and not _EDIT_VERB.match(text):
        return refuse("I only make pictures; reply with a change, e.g. “make it night”, “zoom out”, “4 of them”.")
    for reader in (read_action, read_parameter):
        if (found := reader(text, context)) is not None:
            return found
    vocabulary = context.vocabulary
    if vocabulary is not None and parse_scene(text, vocabulary) is not None:
        return _new_prompt(plain, context, flags)
    if context.edits_by_instruction:
        if _EDIT_VERB.match(text) or _NEGATIVE.match(text):
            return _instruction(plain, context)
        return _new_prompt(plain, context, flags)
    if (scene := edit_scene(text, context)) is not None:
        return scene
    if match := _NEGATIVE.match(text):
        what = re.sub(r"\s+(?:style|please|too|in it|either|at all)$", "", match.group("what") or match.group("taken"))
        items = [item for item in re.split(r"\s*(?:,|\bor\b|\band\b|\bnor\b)\s*", what) if item]
        return remove_things([re.sub(r"^(?:the|any|a|an|some)\s+", "", item) for item in items], context)
    if (edited := edit_text(text, context)) is not None:
        return edited
    drawn = _DRAW.match(plain)
    # Words that point at the last picture ("the third one but at night") are a change not understood, not
    # a description of a new picture.
    pointing = re.search(r"\b(it|this|that|them|one|same|again|but|instead|more|less|version)\b", text)
    if drawn or (len(text.split()) >= 3 and not pointing):
        return _new_prompt(drawn.group("rest") if drawn else plain, context, flags,
                           reading="read as a new picture: it names no change of the last one")
    return refuse("I couldn't tell what to change. Try “make it night”, “with a moon”, “wider”, “again”, "
                  "or “new: …” for a new picture.")
