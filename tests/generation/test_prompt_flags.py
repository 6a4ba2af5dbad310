"""Midjourney-style flags inside the prompt become request fields; bad flags are errors, not prompt text."""

from __future__ import annotations

import re

import pytest

from generation import GenerationRequest, RequestError, apply_prompt_flags, expand_prompt, parse_prompt_flags
from generation.flags import FLAGS, REPEAT_FLAG, size_for_aspect_ratio


def test_every_flag():
    prompt, fields = parse_prompt_flags(
        "a red circle on blue --ar 2:1 --seed 7 --no green, text --steps 12 --cfg 7.5"
        " --sampler DPM++ 2M Karras --count 3"
    )
    assert prompt == "a red circle on blue"
    assert fields == {
        "width": 88,
        "height": 48,
        "seed": 7,
        "negative_prompt": "green, text",
        "num_inference_steps": 12,
        "guidance_scale": 7.5,
        "sampler": "DPM++ 2M Karras",
        "count": 3,
    }


def test_no_flags_leaves_the_prompt_alone():
    assert parse_prompt_flags("a red  circle - with a dash") == ("a red circle - with a dash", {})
    assert parse_prompt_flags("a cat \u2014 sleeping, red\u2014blue") == ("a cat \u2014 sleeping, red\u2014blue", {})


@pytest.mark.parametrize(
    "ratio, base, size",
    [("1:1", 64, (64, 64)), ("16:9", 512, (680, 384)), ("9:16", 64, (48, 88)), ("3:2", 512, (624, 416))],
)
def test_aspect_ratio_keeps_the_base_area_in_multiples_of_8(ratio, base, size):
    _, fields = parse_prompt_flags(f"a square --ar {ratio}", base_size=base)
    assert (fields["width"], fields["height"]) == size


def test_em_dash_and_case_are_accepted():
    # Phones turn "--" into an em dash.
    assert parse_prompt_flags("a circle \u2014seed 5 --SAMPLER euler a") == (
        "a circle",
        {"seed": 5, "sampler": "Euler a"},
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("a circle --chaos 50", f"Unknown flag --chaos. Available flags: {', '.join((*FLAGS, REPEAT_FLAG))}."),
        ("a circle --seed", "--seed needs a value, e.g. --seed 42."),
        ("a circle --seed abc", "--seed needs a whole number, got 'abc' (e.g. --seed 42)."),
        ("a circle --steps 2.5", "--steps needs a whole number, got '2.5' (e.g. --steps 20)."),
        ("a circle --count many", "--count needs a whole number, got 'many' (e.g. --count 4)."),
        ("a circle --cfg high", "--cfg needs a number, got 'high' (e.g. --cfg 7.5)."),
        ("a circle --ar 16x9", "--ar needs two positive whole numbers like 16:9, got '16x9'."),
        ("a circle --ar 0:1", "--ar needs two positive whole numbers like 16:9, got '0:1'."),
        ("a circle --seed 1 --seed 2", "--seed is given twice; use it once."),
        (
            "a circle --seed 3 on a square",
            "--seed takes one value, got '3 on a square'; put prompt text before the flags (e.g. --seed 42).",
        ),
    ],
)
def test_bad_flags_are_errors(text, message):
    with pytest.raises(RequestError) as error:
        parse_prompt_flags(text)
    assert str(error.value) == message


def test_inline_flags_win_over_typed_options():
    typed = GenerationRequest("a circle --seed 3 --no blue", seed=99, negative_prompt="red", guidance_scale=4.0)
    applied = apply_prompt_flags(typed)
    assert (applied.prompt, applied.seed, applied.negative_prompt) == ("a circle", 3, "blue")
    assert applied.guidance_scale == 4.0  # options without a flag stay as typed


def test_quoted_values_lose_their_quotes() -> None:
    assert parse_prompt_flags('a cat --sampler "DPM++ 2M Karras"')[1] == {"sampler": "DPM++ 2M Karras"}
    assert parse_prompt_flags("a cat --no \u201cblurry, text\u201d")[1] == {"negative_prompt": "blurry, text"}


def test_an_extreme_aspect_ratio_is_named_as_such() -> None:
    with pytest.raises(RequestError, match="too extreme"):
        parse_prompt_flags("a cat --ar 100:1")


def test_braces_make_permutations_and_repeat_multiplies_them() -> None:
    assert expand_prompt("a {red, blue} circle --seed 3") == ["a red circle --seed 3", "a blue circle --seed 3"]
    assert expand_prompt("a {red,blue} {circle, square}") == [
        "a red circle", "a red square", "a blue circle", "a blue square"]
    assert expand_prompt("a cat --repeat 3") == ["a cat"] * 3
    assert expand_prompt("{red, blue} --repeat 2") == ["red", "red", "blue", "blue"]
    assert expand_prompt("a plain prompt") == ["a plain prompt"]


@pytest.mark.parametrize(("text", "message"), [
    ("a {red, blue circle", "matching braces"),
    ("a {red, {blue}} circle", "matching braces"),
    ("a {red,,blue} circle", "choices separated by commas"),
    ("a cat --repeat 0", "--repeat needs a whole number from 1 to 10"),
    ("a cat --repeat 11", "--repeat needs a whole number from 1 to 10"),
    ("{a, b, c, d} --repeat 3", "more than 10 jobs"),
])
def test_broken_permutations_are_refused(text: str, message: str) -> None:
    with pytest.raises(RequestError, match=re.escape(message)):
        expand_prompt(text)


def test_tile_is_a_switch_and_the_words_after_it_stay_in_the_prompt() -> None:
    assert parse_prompt_flags("a pattern --tile of circles --seed 2") == ("a pattern of circles", {"tiling": True, "seed": 2})


def test_ar_keeps_sizes_to_the_models_multiple() -> None:
    assert size_for_aspect_ratio(16, 9, 1024, 16) == (1360, 768)
    assert parse_prompt_flags("a cat --ar 16:9", base_size=1024, multiple=16)[1] == {"width": 1360, "height": 768}
