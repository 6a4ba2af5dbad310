"""generation.prompt_words: the shipped model's word-level tokenizer skips what it cannot spell; a byte-level
BPE (a tiny Stable Diffusion folder's CLIP tokenizer) skips nothing."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from generation import RequestError
from generation.local_tokenizers import clip_tokenizer
from generation.models import TINYSHAPES_DIR
from generation.prompt_words import check_readable, skipped_note, skipped_words
from generation.vocabulary import load_vocabulary

MIXED = "🔴 a red circle 🌈 on a blue background"
JAPANESE = "青い背景に赤い丸"


@pytest.fixture(scope="module")
def shipped_tokenizer():
    return CLIPTokenizer.from_pretrained(str(TINYSHAPES_DIR), subfolder="tokenizer")


def test_the_shipped_model_skips_emoji_and_names_them(shipped_tokenizer):
    vocabulary = load_vocabulary(TINYSHAPES_DIR)
    for declared in (vocabulary, None):
        assert skipped_words(MIXED, shipped_tokenizer, declared) == ["🔴", "🌈"]
    assert skipped_note(["🔴", "🌈"], "tinyshapes") == "tinyshapes cannot read 🔴 🌈, so it skipped them."
    assert skipped_note([], "tinyshapes") is None
    check_readable(MIXED, shipped_tokenizer, "tinyshapes")  # a red circle is left: it renders, with a warning


def test_a_japanese_only_prompt_is_refused_for_the_shipped_model(shipped_tokenizer):
    assert skipped_words(JAPANESE, shipped_tokenizer) == [JAPANESE]
    with pytest.raises(RequestError, match=f"tinyshapes cannot read any word of this prompt \\({JAPANESE}\\)"):
        check_readable(JAPANESE, shipped_tokenizer, "tinyshapes")


def test_a_byte_level_tokenizer_skips_nothing(tmp_path):
    # The tokenizer of the tiny SD folders the tests build (tests/generation/tiny_pipelines.py).
    clip_tokenizer().save_pretrained(tmp_path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(tmp_path), subfolder="tokenizer")
    assert skipped_words(MIXED, tokenizer) == [] and skipped_words(JAPANESE, tokenizer) == []
    check_readable(JAPANESE, tokenizer, "tiny-sd")


def test_prepare_refuses_unreadable_prompts_for_the_shipped_model_only(family_renderer):
    from generation import GenerationRequest, GenerationService, Limits

    service = GenerationService(family_renderer, Limits(models=("tinyshapes", "sdxl")))
    with pytest.raises(RequestError, match="tinyshapes cannot read any word"):
        service.prepare(GenerationRequest(JAPANESE, model="tinyshapes"))
    sampler = family_renderer.defaults("sdxl")["sampler"]
    prepared = service.prepare(GenerationRequest(JAPANESE, model="sdxl", sampler=sampler))  # byte-level CLIP
    assert prepared.prompt == JAPANESE
