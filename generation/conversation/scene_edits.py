"""Prompt changes for a model with a declared vocabulary: the words say which slot changes.

"make it green" recolours the shape, "on a yellow background" the background, "a square instead of the
circle" swaps the shape, "add a yellow triangle" makes a pair, "remove the triangle" undoes one, "bigger"
and "move it to the top left" change size and position where the model declares them. A word the model
never learned ("pink", "hexagon", "dog") is refused with what the model does know, since the model could
not draw it.
"""

from __future__ import annotations

import re

from ..vocabulary import Vocabulary
from .interpretation import Interpretation, Kind, TurnContext, describe_changes, refuse
from .slots import Scene, Thing, parse_scene

# Words of a turn that carry no content of their own (the rest must be the model's words).
COMMAND_WORDS = frozenset(
    "make it the a an change to into instead of add with too also remove without no on background color turn "
    "replace swap for one shape and plus put move in at them all both get rid take out drop lose delete please "
    "you be use bigger smaller larger set want give me as well is same but so that this there here corner its "
    "place shift let's let try include another more less little bit some one's go should".split())
_REMOVE = re.compile(r"^(remove|without|no|get rid of|take out|drop|lose|delete)\b")
_ADD = re.compile(r"^(add|with|and|plus|also|include|put|throw in)\b|\b(too|as well)$")


def _mentions(text: str, vocabulary: Vocabulary) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"colours": [], "shapes": [], "sizes": [], "positions": []}
    for word in re.findall(r"[a-z]+", text):
        if word in vocabulary.colours:
            found["colours"].append(word)
        elif word in vocabulary.sizes:
            found["sizes"].append(word)
        elif word in vocabulary.shapes or (word.endswith("s") and word[:-1] in vocabulary.shapes):
            found["shapes"].append(word.rstrip("s") if word not in vocabulary.shapes else word)
    for name in sorted(vocabulary.positions, key=len, reverse=True):
        if re.search(rf"\b{re.escape(name)}\b", text) and not any(name in known for known in found["positions"]):
            found["positions"].append(name)
    return found


def _unknown_words(text: str, vocabulary: Vocabulary) -> list[str]:
    known = vocabulary.words | COMMAND_WORDS
    position_words = {word for name in vocabulary.positions for word in name.split()}
    return [word for word in re.findall(r"[a-z]+", text) if word not in known and word not in position_words]


def _knows(vocabulary: Vocabulary) -> str:
    parts = [f"colours: {', '.join(vocabulary.colours)}", f"shapes: {', '.join(vocabulary.shapes)}"]
    if vocabulary.sizes:
        parts.append(f"sizes: {', '.join(vocabulary.sizes)}")
    if vocabulary.positions:
        parts.append(f"positions: {', '.join(vocabulary.positions)}")
    return "; ".join(parts)


def _target(scene: Scene, found: dict[str, list[str]]) -> tuple[int, str | None]:
    """Which thing the words are about: the one whose shape they name, else the first (the reading says so)."""
    for shape in found["shapes"]:
        for index, thing in enumerate(scene.things):
            if thing.shape == shape:
                return index, None
    if len(scene.things) > 1:
        return 0, f"changed the first shape ({scene.things[0].colour} {scene.things[0].shape})"
    return 0, None


def _resize(thing: Thing, text: str, sizes: tuple[str, ...]) -> str | None:
    current = sizes.index(thing.size) if thing.size in sizes else len(sizes) // 2
    if re.search(r"\b(bigger|larger)\b", text):
        return sizes[min(current + 1, len(sizes) - 1)]
    if re.search(r"\bsmaller\b", text):
        return sizes[max(current - 1, 0)]
    return None


def edit_scene(text: str, context: TurnContext) -> Interpretation | None:
    """The reading of `text` as a change of the parent's slots; None when the parent is no scene."""
    vocabulary = context.vocabulary
    if vocabulary is None:
        return None
    scene = parse_scene(context.parent.prompt, vocabulary)
    if scene is None:
        return None
    unknown = _unknown_words(text, vocabulary)
    if unknown:
        return refuse(f"This model can't draw “{' '.join(unknown)}”. It knows {_knows(vocabulary)}.")
    colour_words = "|".join(map(re.escape, vocabulary.colours))
    text = re.sub(rf"\bon (an? )?({colour_words})\b(?! background)", r"on \1\2 background", text)  # "blue on red"
    found = _mentions(text, vocabulary)
    reading = None
    edit = "replace"
    if _REMOVE.search(text) and (found["shapes"] or found["colours"]) and "background" not in text:
        if len(scene.things) < 2:
            return refuse("That would leave nothing to draw; say what to draw instead.")
        keep = [thing for thing in scene.things
                if thing.shape not in found["shapes"] and thing.colour not in found["colours"]]
        if len(keep) != 1:
            return refuse("Say which shape to remove, e.g. “remove the triangle”.")
        scene, edit = Scene((keep[0],), scene.background), "remove"
    elif _ADD.search(text) and found["shapes"]:
        if len(scene.things) > 1 or scene.things[0].count:
            return refuse("This model draws at most two shapes; remove one first.")
        colour = found["colours"][0] if found["colours"] else scene.things[0].colour
        added = Thing(colour=colour, shape=found["shapes"][-1], size=found["sizes"][0] if found["sizes"] else None)
        scene, edit = Scene((scene.things[0], added), scene.background), "add"
    else:
        colours = list(found["colours"])
        if "background" in text:
            before = text.split("background")[0]
            background = [colour for colour in colours if colour in before.split()[-3:]] or colours[-1:]
            if not background:
                return refuse(f"Which colour for the background? It knows {', '.join(vocabulary.colours)}.")
            scene = Scene(scene.things, background[-1], scene.joiner)
            colours.remove(background[-1])
        index, reading = _target(scene, found)
        changes: dict[str, str] = {}
        shapes = found["shapes"]
        if len(shapes) == 2:  # "a square instead of the circle", "change the circle to a square"
            old, new = (shapes[1], shapes[0]) if "instead of" in text else (shapes[0], shapes[1])
            index = next((i for i, thing in enumerate(scene.things) if thing.shape == old), index)
            changes["shape"] = new
        elif len(shapes) == 1 and scene.things[index].shape != shapes[0]:
            changes["shape"] = shapes[0]
        if colours:
            changes["colour"] = colours[0]
        if found["sizes"]:
            changes["size"] = found["sizes"][0]
        elif vocabulary.sizes and (size := _resize(scene.things[index], text, vocabulary.sizes)):
            changes["size"] = size
        if found["positions"]:
            changes["position"] = found["positions"][0]
        if changes:
            scene = scene.replace_thing(index, changes)
        elif "background" not in text:
            return None
    prompt = scene.prompt(vocabulary)
    if prompt == context.parent.prompt:
        return refuse("That's what it already shows; say what should change.")
    changes_out = {"prompt": prompt}
    return Interpretation(Kind.PROMPT, prompt_edit=edit, changes=changes_out, reading=reading,
                          summary=describe_changes(changes_out, context.parent))
