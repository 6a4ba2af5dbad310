"""What a model declares it understands: its words, and the canonical way its prompts are written.

A model folder may hold a ``vocabulary.json``; the shipped model's lists its colours, shapes, sizes,
positions and counts. The conversation interpreter uses it to edit prompts slot by slot ("make it
green" changes the object's colour, "on a yellow background" the background), the describer to name
what it sees, and the prompt check to warn about words the model never learned. A model without the
file has no declared vocabulary (``None``): its prompts are free text.

The canonical prompt grammar of a declared vocabulary (what the shipped model is trained on):

    object := article [size] colour shape [position]          "a large red circle in the top left"
    pair   := object " and " object | object " left of " object | object " above " object
    many   := count [size] colour shape "s" [position]         "two small blue squares"
    prompt := (object | pair | many) " on " article colour " background"

``positions`` maps a position's name to the phrase written in prompts ("top left" → "in the top left").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = "vocabulary.json"


@dataclass(frozen=True)
class Vocabulary:
    colours: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    positions: dict[str, str] = field(default_factory=dict)
    counts: tuple[str, ...] = ()
    # Words that are fine in a prompt but carry no content of their own ("a", "on", "background").
    function_words: tuple[str, ...] = ()

    @property
    def words(self) -> frozenset[str]:
        """Every single word the model knows (multi-word phrases split)."""
        phrases = (*self.colours, *self.shapes, *self.sizes, *self.counts, *self.function_words,
                   *self.positions, *self.positions.values())
        # Plural shapes belong to the grammar only where counts do ("two circles").
        plurals = tuple(f"{shape}s" for shape in self.shapes) if self.counts else ()
        return frozenset(word for phrase in (*phrases, *plurals) for word in phrase.lower().split())

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Vocabulary:
        def words(key: str) -> tuple[str, ...]:
            value = data.get(key, ())
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"vocabulary: {key!r} must be a list of words")
            return tuple(str(word) for word in value)

        positions = data.get("positions", {})
        if not isinstance(positions, dict):
            raise ValueError("vocabulary: 'positions' must map a position's name to its phrase")
        return cls(colours=words("colours"), shapes=words("shapes"), sizes=words("sizes"),
                   positions={str(k): str(v) for k, v in positions.items()}, counts=words("counts"),
                   function_words=words("function_words"))

    def to_dict(self) -> dict[str, object]:
        return {"colours": list(self.colours), "shapes": list(self.shapes), "sizes": list(self.sizes),
                "positions": dict(self.positions), "counts": list(self.counts),
                "function_words": list(self.function_words)}


def load_vocabulary(model_dir: str | Path) -> Vocabulary | None:
    """The vocabulary declared in a model folder, or None where the folder declares none."""
    path = Path(model_dir) / FILE_NAME
    if not path.is_file():
        return None
    return Vocabulary.from_dict(json.loads(path.read_text(encoding="utf-8")))
