"""The optional LLM interpreter: any OpenAI-compatible endpoint (Ollama, llama.cpp server, vLLM …).

It is asked for one JSON object that follows `ANSWER_SCHEMA` (response_format json_schema), within a
bounded time. Its answer is checked like any request (actions against the parent's images and the edit
ranges, parameters against their declared bounds, prompts for length); on an error, a timeout or an
answer that does not hold, the embedded rules answer and the interpretation's `fallback` says why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from ..editing import DIRECTIONS, ZOOM_RANGE, parse_region
from ..request import MAX_PROMPT_CHARS, RequestError
from ..samplers import SAMPLERS
from .interpretation import (
    ACTIONS,
    PROMPT_EDITS,
    TURN_PARAMETERS,
    Interpretation,
    Kind,
    TurnContext,
    describe_action,
    describe_changes,
    describe_new,
)
from .parameters import aspect_size, change
from .rules import interpret_rules
from .words import parse_ratio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterpreterConfig:
    """Where the LLM interpreter is (bot settings: INTERPRETER_URL, INTERPRETER_MODEL, INTERPRETER_API_KEY,
    INTERPRETER_TIMEOUT_S). No url: the embedded rules alone."""

    url: str | None = None  # the OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1
    model: str = "llama3.1"
    api_key: str = "unused"  # local servers ignore it; the client needs one
    timeout_s: float = 10.0


_JSON_TYPES = {"int": "integer", "float": "number", "text": "string", "choice": "string", "bool": "boolean"}
# The parameters a turn may set, by request field (width and height come from "aspect").
_SCHEMA_PARAMETERS = [parameter for parameter in TURN_PARAMETERS if parameter.field not in ("width", "height")]


def _nullable(kind: str, description: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"], "description": description}
    if choices is not None:
        schema["enum"] = [*choices, None]
    return schema


ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "kind": {"type": "string", "enum": [kind.value for kind in Kind]},
        "action": _nullable("string", "kind=action: what to do with the last picture", ACTIONS),
        "image": _nullable("integer", "1-based image of the last result (variations, pick, upscale)"),
        "factor": _nullable("number", f"zoom out factor, {ZOOM_RANGE[0]:g} to {ZOOM_RANGE[1]:g}"),
        "direction": _nullable("string", "pan direction", DIRECTIONS),
        "region": _nullable("string", "vary region: cells 0-8 of a 3x3 grid, row by row, joined with +"),
        "aspect": _nullable("string", "kind=param: new aspect ratio W:H, e.g. 16:9"),
        **{parameter.field: _nullable(_JSON_TYPES[parameter.kind], f"kind=param: {parameter.description}",
                                      SAMPLERS if parameter.field == "sampler" else None)
           for parameter in _SCHEMA_PARAMETERS},
        "prompt": _nullable("string", "kind=prompt or new: the whole new prompt"),
        "prompt_edit": _nullable("string", "kind=prompt: how the prompt changed", PROMPT_EDITS),
        "instruction": _nullable("string", "prompt_edit=instruction: the edit instruction for the model"),
        "reason": _nullable("string", "kind=refuse: a short reason shown to the member"),
        "reading": _nullable("string", "if the words were ambiguous: which reading you chose"),
    },
}
ANSWER_SCHEMA["required"] = list(ANSWER_SCHEMA["properties"])

_SYSTEM = """You read one chat message that replies to an image made by a text-to-image bot and decide what
it asks for. Answer with one JSON object following the schema. Kinds: "action" on the last picture
(reroll, variations, pick, upscale, zoom, pan, square, vary_region); "param": change parameters, seed kept
(aspect, count, steps, guidance, sampler, negative prompt); "prompt": change the prompt, seed kept
(prompt_edit replace, add or remove — give the whole new prompt — or instruction when the model edits by
instruction); "new": an unrelated new prompt; "refuse": small talk, questions, or what can't be done."""


class BadAnswer(ValueError):
    """The model's answer is not a usable interpretation."""


def _context_message(context: TurnContext) -> str:
    parent = context.parent
    facts: dict[str, Any] = {"prompt": parent.prompt, "negative_prompt": parent.negative_prompt, "seed": parent.seed,
             "width": parent.width, "height": parent.height, "steps": parent.num_inference_steps,
             "guidance": parent.guidance_scale, "sampler": parent.sampler, "images": context.image_count,
             "model": parent.model, "edits_by_instruction": context.edits_by_instruction}
    if context.vocabulary is not None:
        facts["the model only knows these words"] = context.vocabulary.to_dict()
    return f"The last picture: {json.dumps(facts)}\nThe message: {context.words}"


def to_interpretation(answer: dict[str, Any], context: TurnContext) -> Interpretation:
    """The model's answer checked like any request; BadAnswer says what does not hold."""
    kind = Kind(answer.get("kind"))
    reading = answer.get("reading") or None
    if kind is Kind.REFUSE:
        reason = str(answer.get("reason") or "I couldn't tell what to change.")
        return Interpretation(Kind.REFUSE, reason=reason, reading=reading, summary=f"✋ {reason}")
    if kind is Kind.ACTION:
        return _action(answer, context, reading)
    if kind is Kind.PARAMETER:
        changes: dict[str, Any] = {}
        if answer.get("aspect"):
            ratio = parse_ratio(str(answer["aspect"]))
            if ratio is None:
                raise BadAnswer(f"aspect {answer['aspect']!r} is no W:H ratio")
            changes.update(aspect_size(context.parent, ratio))
        changes.update({parameter.field: answer[parameter.field] for parameter in _SCHEMA_PARAMETERS
                        if answer.get(parameter.field) is not None})
        if not changes:
            raise BadAnswer("a parameter change that changes nothing")
        checked = change(context, changes, reading)
        if checked.kind is Kind.REFUSE:
            raise BadAnswer(checked.reason or "")
        return checked
    prompt = answer.get("prompt")
    edit = answer.get("prompt_edit")
    if kind is Kind.PROMPT and edit == "instruction":
        instruction = str(answer.get("instruction") or prompt or "").strip()
        if not context.edits_by_instruction or not instruction:
            raise BadAnswer("an instruction edit for a model that does not edit by instruction")
        return Interpretation(Kind.PROMPT, prompt_edit="instruction", instruction=instruction,
                              changes={"prompt": instruction}, reading=reading,
                              summary=describe_changes({}, context.parent, instruction=instruction))
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise BadAnswer(f"the prompt must be 1 to {MAX_PROMPT_CHARS} characters")
    if kind is Kind.PROMPT and edit not in PROMPT_EDITS:
        raise BadAnswer(f"unknown prompt edit {edit!r}")
    changes = {"prompt": prompt.strip()}
    if answer.get("negative_prompt") is not None:
        changes["negative_prompt"] = str(answer["negative_prompt"])
    summary = describe_changes(changes, context.parent)
    if kind is Kind.NEW:
        return Interpretation(Kind.NEW, changes=changes, reading=reading, summary=describe_new(changes))
    return Interpretation(Kind.PROMPT, prompt_edit=edit, changes=changes, reading=reading, summary=summary)


def _action(answer: dict[str, Any], context: TurnContext, reading: str | None) -> Interpretation:
    action = answer.get("action")
    if action not in ACTIONS:
        raise BadAnswer(f"unknown action {action!r}")
    values: dict[str, Any] = {}
    if action in ("variations", "pick", "upscale"):
        image = answer.get("image") or 1
        if not isinstance(image, int) or not 1 <= image <= context.image_count:
            raise BadAnswer(f"image {image!r}: the result has {context.image_count}")
        values["image"] = image
    elif action == "zoom":
        factor = answer.get("factor") or 2.0
        if not isinstance(factor, (int, float)) or not ZOOM_RANGE[0] < factor <= ZOOM_RANGE[1]:
            raise BadAnswer(f"zoom factor {factor!r}")
        values["factor"] = float(factor)
    elif action == "pan":
        if answer.get("direction") not in DIRECTIONS:
            raise BadAnswer(f"pan direction {answer.get('direction')!r}")
        values["direction"] = answer["direction"]
    elif action == "vary_region":
        try:
            parse_region(answer.get("region"))
        except RequestError as error:
            raise BadAnswer(str(error)) from None
        values["region"] = answer["region"]
    interpretation = Interpretation(Kind.ACTION, action=action, reading=reading, **values)
    return replace(interpretation, summary=describe_action(interpretation))


async def interpret_llm(context: TurnContext, config: InterpreterConfig, client: Any = None) -> Interpretation:
    """The model's reading of the turn, or the rules' one with `fallback` saying why the model's was not used."""
    from openai import APITimeoutError, AsyncOpenAI

    client = client or AsyncOpenAI(base_url=config.url, api_key=config.api_key or "unused",
                                   timeout=config.timeout_s, max_retries=0)
    try:
        response = await asyncio.wait_for(client.chat.completions.create(
            model=config.model,
            messages=[{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _context_message(context)}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "turn", "schema": ANSWER_SCHEMA, "strict": True}},
            temperature=0,
        ), timeout=config.timeout_s)
        content = response.choices[0].message.content
        answer = json.loads(content or "")
        if not isinstance(answer, dict):
            raise BadAnswer("the answer is no JSON object")
        return to_interpretation(answer, context)
    except (TimeoutError, asyncio.TimeoutError, APITimeoutError):
        reason = f"the interpreter model did not answer within {config.timeout_s:g} s"
    except (BadAnswer, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        reason = f"the interpreter model's answer was not usable ({error})"
    except Exception as error:  # the openai client's connection and status errors
        reason = f"the interpreter model failed ({type(error).__name__})"
    log.warning("interpreter fallback to the rules: %s", reason)
    return replace(interpret_rules(context), fallback=reason)


async def interpret(context: TurnContext, config: InterpreterConfig | None = None) -> Interpretation:
    """The reading of a turn: the LLM's where one is configured, else (and on its failure) the rules'."""
    if config is None or not config.url:
        return interpret_rules(context)
    return await interpret_llm(context, config)
