"""Words of a prompt that a model cannot read, so they would vanish from the picture without a word.

The shipped model's tokenizer is word-level: a character outside its small alphabet (an emoji, a Japanese
word) becomes its unknown token, which is also its end-of-text token, so "🔴 a red circle 🌈" reads as
"a red circle" padded with end-of-text. A byte-level BPE (Stable Diffusion's CLIP) can spell every
character, so nothing is ever skipped there; T5's unknown piece is reported the same way.
"""

from __future__ import annotations

from typing import Any

from .prompts import encoded_text
from .request import RequestError
from .vocabulary import Vocabulary

_EDGE_PUNCTUATION = ".,;:!?\"'()[]"


def skipped_words(prompt: str, tokenizer: Any, vocabulary: Vocabulary | None = None) -> list[str]:
    """The words of `prompt` (as the encoder reads it) that `tokenizer` turns, wholly or in part, into its
    unknown token, in prompt order, each once. Words of a declared vocabulary are known without asking."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return []
    known = vocabulary.words if vocabulary is not None else frozenset()
    skipped: list[str] = []
    for word in encoded_text(prompt).split():
        if word in skipped or word.lower().strip(_EDGE_PUNCTUATION) in known:
            continue
        if unknown in tokenizer(word, add_special_tokens=False).input_ids:
            skipped.append(word)
    return skipped


def check_readable(prompt: str, tokenizer: Any, model_label: str, vocabulary: Vocabulary | None = None) -> None:
    """RequestError when no word of a non-empty prompt is left that the model can read."""
    words = encoded_text(prompt).split()
    skipped = skipped_words(prompt, tokenizer, vocabulary)
    if words and len(skipped) == len(set(words)):
        raise RequestError(
            f"{model_label} cannot read any word of this prompt ({' '.join(skipped)}), so it would draw at random; "
            "nothing was queued. Describe the picture in words it knows, e.g. “a red circle on a blue background”.")


def skipped_note(words: list[str], model_label: str) -> str | None:
    """The warning a result carries when its prompt lost words; None when it lost none."""
    if not words:
        return None
    return f"{model_label} cannot read {' '.join(words)}, so it skipped {'it' if len(words) == 1 else 'them'}."

