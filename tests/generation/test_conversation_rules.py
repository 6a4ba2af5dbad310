"""The embedded turn interpreter: the evaluation set's quality gate, slot edits in the model's grammar,
inline flags, bad input, and apply()."""

from __future__ import annotations

import pytest

from evaluation.interpreter import SHIPPED_MODEL, load_cases, score
from generation.conversation import Interpretation, Kind, TurnContext, apply, interpret_rules
from generation.conversation.slots import parse_scene
from generation.request import GenerationRequest
from generation.vocabulary import Vocabulary, load_vocabulary

SHAPES = GenerationRequest(prompt="a red circle on a blue background", seed=7, width=64, height=64)
CASTLE = GenerationRequest(prompt="a castle on a hill at sunset, oil painting", seed=1234, width=512, height=512,
                           model="sd15")
# The shipped model's grammar with every slot declared (sizes, positions, counts), as its docstring writes it.
FULL = Vocabulary(
    colours=("red", "orange", "yellow", "green", "blue", "purple", "white", "black"),
    shapes=("circle", "square", "triangle"),
    sizes=("tiny", "small", "medium", "large"),
    positions={"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
               "centre": "in the centre", "top left": "in the top left", "top right": "in the top right",
               "bottom left": "in the bottom left", "bottom right": "in the bottom right"},
    counts=("two",),
    function_words=("a", "an", "on", "background", "and", "left", "of", "above", "in", "the", "at"),
)


def read(words: str, parent: GenerationRequest = SHAPES, vocabulary: Vocabulary | None = FULL,
         **context: object) -> Interpretation:
    return interpret_rules(TurnContext(words=words, parent=parent, vocabulary=vocabulary, **context))  # type: ignore[arg-type]


@pytest.mark.parametrize("vocabulary", ["shipped", "full"])
async def test_the_evaluation_set_passes_the_quality_gate(vocabulary):
    """≥ 95 % overall and ≥ 85 % in every category, with the shipped vocabulary and with every slot declared."""
    cases = load_cases()
    assert len(cases) >= 150
    result = await score(cases, vocabulary=load_vocabulary(SHIPPED_MODEL) if vocabulary == "shipped" else FULL)
    assert result.overall >= 0.95, result.table()
    for category, (right, total) in result.per_category.items():
        assert right / total >= 0.85, f"{category}: {right}/{total}\n{result.table()}"


def test_the_set_covers_every_action_parameter_and_prompt_change():
    categories = {case.category for case in load_cases()}
    assert categories >= {
        "action/reroll", "action/variations", "action/pick", "action/upscale", "action/zoom", "action/pan",
        "action/square", "action/vary_region", "param/aspect", "param/count", "param/steps", "param/guidance",
        "param/sampler", "param/negative", "prompt/replace", "prompt/add", "prompt/remove", "prompt/new",
        "prompt/instruction", "refuse"}


def test_sizes_and_positions_edit_their_slots():
    large = read("make it bigger", SHAPES.replace(prompt="a medium red circle on a blue background"))
    assert large.changes["prompt"] == "a large red circle on a blue background"
    moved = read("move it to the top left")
    assert moved.changes["prompt"] == "a red circle in the top left on a blue background"
    small = read("small please")
    assert small.changes["prompt"] == "a small red circle on a blue background"
    assert small.summary == "→ a small red circle on a blue background · seed 7 kept"


def test_the_grammar_reads_pairs_and_many():
    pair = parse_scene("a large red circle in the top left left of a blue square on a white background", FULL)
    assert pair is not None and [t.shape for t in pair.things] == ["circle", "square"]
    assert pair.things[0].size == "large" and pair.things[0].position == "top left"
    many = parse_scene("two small blue squares on a white background", FULL)
    assert many is not None and many.things[0].count == "two"
    assert many.prompt(FULL) == "two small blue squares on a white background"
    assert parse_scene("a dog on a skateboard", FULL) is None
    recoloured = read("make them green", SHAPES.replace(prompt="two small blue squares on a white background"))
    assert recoloured.changes["prompt"] == "two small green squares on a white background"


def test_an_ambiguous_turn_says_which_reading_was_chosen():
    pair = SHAPES.replace(prompt="a red circle and a yellow triangle on a blue background")
    reading = read("make it green", pair)
    assert reading.changes["prompt"] == "a green circle and a yellow triangle on a blue background"
    assert reading.reading is not None and "first shape" in reading.reading
    wide = SHAPES.replace(width=80, height=56)
    square = read("make it square", wide)
    assert square.action == "square" and square.reading is not None and "a square instead" in square.reading
    assert read("a square instead", wide).changes["prompt"] == "a red square on a blue background"
    grid = read("upscale", SHAPES.replace(count=4), image_count=4)
    assert grid.image == 1 and grid.reading is not None


def test_inline_flags_work_as_in_imagine():
    reading = read("make it green --steps 30 --no blur")
    assert reading.category == "prompt/replace"
    request = apply(reading, SHAPES)
    assert (request.prompt, request.num_inference_steps, request.negative_prompt, request.seed) == (
        "a green circle on a blue background", 30, "blur", 7)
    only_flags = read("--ar 16:9")
    assert only_flags.category == "param/aspect"
    assert read("make it green --bogus 3").kind is Kind.REFUSE
    assert "Unknown flag" in (read("make it green --bogus 3").reason or "")


def test_a_mention_of_the_bot_is_not_part_of_the_words():
    assert read("<@123456789012345678> make it green").changes["prompt"] == "a green circle on a blue background"
    assert read("<@!123456789012345678>").kind is Kind.REFUSE


def test_the_script_prints_the_table(capsys):
    # In-process; `python -m evaluation.interpreter` as a process is a system test (tests/test_readme_commands.py).
    from evaluation.interpreter import main

    assert main([]) == 0
    printed = capsys.readouterr().out
    assert "| category | right | total | accuracy |" in printed
    assert "| **overall** |" in printed and "| action/zoom |" in printed


def test_bad_input_is_refused_with_a_reason():
    for words in ("", "   ", "x" * 4000, "thanks!", "make it pink", "steps 500", "zoom out 10x", "???"):
        reading = read(words)
        assert reading.kind is Kind.REFUSE and reading.reason, words
        assert reading.summary.startswith("✋")


def test_free_text_without_the_moon_removes_it_and_keeps_it_out():
    parent = CASTLE.replace(prompt="a castle on a hill with a moon, night")
    reading = read("without the moon", parent, None)
    request = apply(reading, parent)
    assert request.prompt == "a castle on a hill, night"
    assert request.negative_prompt == "moon" and request.seed == parent.seed
    assert read("no text", parent, None).category == "param/negative"


def test_an_instruction_model_gets_the_words_as_an_instruction():
    reading = read("make it night", CASTLE, None, edits_by_instruction=True)
    assert reading.category == "prompt/instruction" and reading.instruction == "make it night"
    assert apply(reading, CASTLE).prompt == "make it night"
    assert read("zoom out", CASTLE, None, edits_by_instruction=True).category == "action/zoom"


def test_apply_keeps_the_seed_for_changes_and_starts_fresh_for_a_new_prompt():
    changed = apply(read("wider", CASTLE, None), CASTLE)
    assert changed.seed == 1234 and changed.width > changed.height
    new = apply(read("new: a dog on a skateboard", CASTLE, None), CASTLE.replace(negative_prompt="blur"))
    assert (new.prompt, new.seed, new.negative_prompt, new.model) == ("a dog on a skateboard", None, "", "sd15")
    with pytest.raises(ValueError):
        apply(read("again"), SHAPES)
    with pytest.raises(ValueError):
        apply(read("thanks"), SHAPES)


def test_a_reading_round_trips_through_its_stored_form():
    for words in ("make it green", "zoom out a bit", "variations of 2", "wider", "thanks"):
        reading = read(words, SHAPES.replace(count=4), image_count=4)
        assert Interpretation.from_dict(reading.to_dict()) == reading
