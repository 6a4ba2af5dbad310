"""Score the turn interpreter on evaluation/turns.jsonl: accuracy per category, as a table.

    python -m evaluation.interpreter            # the embedded rules
    python -m evaluation.interpreter --misses   # also list every utterance read wrongly
    INTERPRETER_URL=http://127.0.0.1:11434/v1 INTERPRETER_MODEL=llama3.1 python -m evaluation.interpreter --llm

Each line of the set holds the member's words, the parent's parameters (model "tinyshapes" reads the
shipped model's vocabulary; any other model is free text; "instruct": true marks a model that edits by
instruction) and what the reading must be: its category, and the values that matter (image, factor,
direction, region; or fields of the next request: aspect, count, steps, guidance, sampler, prompt, words
the prompt or negative prompt must hold or lack). A parameter or prompt change must keep the seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.conversation import Interpretation, InterpreterConfig, Kind, TurnContext, apply, interpret
from generation.request import GenerationRequest
from generation.vocabulary import Vocabulary, load_vocabulary

SET = Path(__file__).with_name("turns.jsonl")
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "generation" / "tinyshapes" / "weights"


@dataclass(frozen=True)
class Case:
    category: str
    words: str
    parent: dict[str, Any]
    expect: dict[str, Any]


def load_cases(path: Path = SET) -> list[Case]:
    return [Case(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def context_of(case: Case, vocabulary: Vocabulary | None) -> TurnContext:
    fields = {name: value for name, value in case.parent.items() if name != "instruct"}
    parent = GenerationRequest(**fields)
    return TurnContext(words=case.words, parent=parent, image_count=parent.count,
                       vocabulary=vocabulary if parent.model == "tinyshapes" else None,
                       edits_by_instruction=bool(case.parent.get("instruct")))


def _relative(value: float, parent: float, expected: Any) -> bool:
    if expected == ">":
        return value > parent
    if expected == "<":
        return value < parent
    return bool(value == expected)


def _aspect_holds(width: int, height: int, expected: str) -> bool:
    if expected == "landscape":
        return width > height
    if expected == "portrait":
        return height > width
    ratio_w, ratio_h = (int(part) for part in expected.split(":"))
    return abs(width / height - ratio_w / ratio_h) <= 0.08 * ratio_w / ratio_h


def problems(case: Case, reading: Interpretation, parent: GenerationRequest) -> list[str]:
    """What is wrong with the reading ([] = right)."""
    if reading.category != case.category:
        return [f"category {reading.category} ({reading.reason or reading.summary})"]
    wrong = [f"{name} {getattr(reading, name)!r} != {case.expect[name]!r}"
             for name in ("image", "factor", "direction", "region")
             if name in case.expect and getattr(reading, name) != case.expect[name]]
    if "instruction_contains" in case.expect:
        wrong += [f"instruction lacks {word!r}" for word in case.expect["instruction_contains"]
                  if word not in (reading.instruction or "").lower()]
    if reading.kind not in (Kind.PARAMETER, Kind.PROMPT, Kind.NEW) or reading.instruction:
        return wrong
    after = apply(reading, parent)
    if reading.kind is not Kind.NEW and after.seed != parent.seed:
        wrong.append("seed not kept")
    expect = case.expect
    checks = [
        ("aspect", lambda: _aspect_holds(after.width or 0, after.height or 1, expect["aspect"])),
        ("count", lambda: after.count == expect["count"]),
        ("steps", lambda: _relative(after.num_inference_steps, parent.num_inference_steps, expect["steps"])),
        ("guidance", lambda: _relative(after.guidance_scale, parent.guidance_scale, expect["guidance"])),
        ("sampler", lambda: after.sampler == expect["sampler"]),
        ("prompt", lambda: after.prompt == expect["prompt"]),
        ("prompt_same", lambda: after.prompt == parent.prompt),
        ("prompt_contains", lambda: all(word in after.prompt.lower() for word in expect["prompt_contains"])),
        ("prompt_lacks", lambda: not any(word in after.prompt.lower() for word in expect["prompt_lacks"])),
        ("negative_contains", lambda: all(word in after.negative_prompt.lower()
                                          for word in expect["negative_contains"])),
    ]
    wrong += [f"{name}: got prompt {after.prompt!r}, negative {after.negative_prompt!r}, "
              f"{after.width}x{after.height}, count {after.count}, steps {after.num_inference_steps}, "
              f"guidance {after.guidance_scale}, sampler {after.sampler}"
              for name, holds in checks if name in expect and not holds()]
    return wrong


@dataclass(frozen=True)
class Score:
    per_category: dict[str, tuple[int, int]]  # category -> (right, total)
    misses: list[tuple[Case, list[str]]]

    @property
    def overall(self) -> float:
        right = sum(r for r, _ in self.per_category.values())
        return right / sum(total for _, total in self.per_category.values())

    def table(self) -> str:
        lines = ["| category | right | total | accuracy |", "|---|---:|---:|---:|"]
        for category in sorted(self.per_category):
            right, total = self.per_category[category]
            lines.append(f"| {category} | {right} | {total} | {100 * right / total:.0f} % |")
        right = sum(r for r, _ in self.per_category.values())
        total = sum(t for _, t in self.per_category.values())
        lines.append(f"| **overall** | {right} | {total} | {100 * right / total:.1f} % |")
        return "\n".join(lines)


async def score(cases: list[Case], config: InterpreterConfig | None = None,
                vocabulary: Vocabulary | None = None) -> Score:
    vocabulary = vocabulary if vocabulary is not None else load_vocabulary(SHIPPED_MODEL)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    for case in cases:
        context = context_of(case, vocabulary)
        reading = await interpret(context, config)
        wrong = problems(case, reading, context.parent)
        counts[case.category][1] += 1
        if wrong:
            misses.append((case, wrong))
        else:
            counts[case.category][0] += 1
    return Score({category: (right, total) for category, (right, total) in counts.items()}, misses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true", help="list the utterances read wrongly")
    parser.add_argument("--llm", action="store_true", help="use INTERPRETER_URL (the rules answer when it fails)")
    arguments = parser.parse_args(argv)
    config = None
    if arguments.llm:
        config = InterpreterConfig(url=os.environ["INTERPRETER_URL"],
                                   model=os.environ.get("INTERPRETER_MODEL", "llama3.1"),
                                   api_key=os.environ.get("INTERPRETER_API_KEY", "unused"),
                                   timeout_s=float(os.environ.get("INTERPRETER_TIMEOUT_S", "10")))
    result = asyncio.run(score(load_cases(), config))
    print(result.table())
    if arguments.misses:
        for case, wrong in result.misses:
            print(f"- {case.category}: {case.words!r} on {case.parent['prompt']!r}: {'; '.join(wrong)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
