"""Tokenizers written locally, for random-weight pipelines (tests, gpu_check): no hub needed.

A byte-level CLIP BPE without merges (one token per character, plus `</w>` at word ends) and a small
T5 unigram vocabulary. Token ids stay below 600 and 128, so any CLIP or T5 text encoder config fits.
"""

from __future__ import annotations


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2 / CLIP byte-level alphabet
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clip_tokenizer(max_length: int = 77):
    """A byte-level CLIP tokenizer without merges: one token per character (plus `</w>` at word ends)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _bytes_to_unicode().values():
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def t5_tokenizer(max_length: int = 128):
    """A small T5 unigram tokenizer: letters, digits and a few words."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    words = ["a", "red", "blue", "green", "circle", "square", "on", "background", "the", "of", "cat"]
    pieces += [("▁" + word, -3.0) for word in words]
    pieces += [(char, -5.0) for char in "abcdefghijklmnopqrstuvwxyz0123456789,.:;!?-()"]
    pieces += [("▁" + char, -4.5) for char in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)
