"""The shipped model's extended vocabulary: sizes, positions, pairs and counts in data, measures and words."""

import numpy as np
import pytest
from PIL import Image

from training.tinyshapes import measure, scenes
from generation.vocabulary import load_vocabulary
from training.tinyshapes import build, data, frame
from training.tinyshapes.check_measures import ATTRIBUTES, validate


def test_the_declaration_for_new_weights_has_the_extended_words():
    # build.py writes this into every export; the shipped weights keep their own (older) file until
    # weights trained on the extended data are shipped.
    vocabulary = build.vocabulary_declaration()
    assert vocabulary.sizes == ("tiny", "small", "medium", "large")
    assert vocabulary.positions["top left"] == "in the top left" and vocabulary.counts == ("two", "three")


def test_the_shipped_vocabulary_declares_only_words_the_shipped_weights_know():
    from transformers import CLIPTokenizer

    vocabulary = load_vocabulary(build.WEIGHTS_DIR)
    assert vocabulary is not None
    tokenizer = CLIPTokenizer.from_pretrained(build.WEIGHTS_DIR / "tokenizer")
    for word in vocabulary.words:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, word


def test_every_trained_word_is_one_token_of_the_new_tokenizer():
    tokenizer = build.build_tokenizer()
    for word in build.TRAINED_WORDS:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    # The canonical grammar and every caption only use trained words.
    for index in range(200):
        _, scene, caption = data.make_example(9, index)
        assert set(data.full_caption(scene).split()) <= set(build.TRAINED_WORDS), caption
        assert set(caption.split()) <= set(build.TRAINED_WORDS), caption


def test_extending_the_vocabulary_keeps_every_old_word_row():
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    from training.tinyshapes.train import extend_vocabulary

    old_tokenizer = CLIPTokenizer.from_pretrained(build.WEIGHTS_DIR / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(build.WEIGHTS_DIR / "text_encoder")
    old_rows = text_encoder.get_input_embeddings().weight.detach().clone()
    tokenizer = build.build_tokenizer()
    extend_vocabulary(text_encoder, old_tokenizer, tokenizer)
    rows = text_encoder.get_input_embeddings().weight
    assert rows.shape[0] == len(tokenizer) > len(old_tokenizer)
    for token, old_id in old_tokenizer.get_vocab().items():
        assert torch.equal(rows[tokenizer.get_vocab()[token]], old_rows[old_id]), token
    ids = tokenizer("a large red circle in the top left", return_tensors="pt").input_ids
    assert text_encoder(ids)[0].shape[1] == ids.shape[1]


def test_captions_use_the_canonical_grammar():
    thing = data.Thing("red", "circle", (0, 0, 10, 10))
    placed = data.Scene((thing,), "blue", size="large", position="top left")
    assert data.full_caption(placed) == "a large red circle in the top left on a blue background"
    pair = data.Scene((thing, data.Thing("blue", "square", (20, 0, 30, 10))), "white", "pair", relation="left of")
    assert data.full_caption(pair) == "a red circle left of a blue square on a white background"
    many = data.Scene((thing, thing), "orange", "many", size="small")
    assert data.full_caption(many) == "two small red circles on an orange background"


@pytest.mark.parametrize("ratio", ["1:1", "16:9", "9:16"])
def test_both_measures_read_every_attribute_of_training_images(ratio):
    shares, misses = validate(data.BUCKETS[ratio], 60, seed=77)
    assert set(shares) == set(ATTRIBUTES)
    # Full figures over 600+ images per aspect: python -m training.tinyshapes.check_measures.
    assert min(shares.values()) >= 0.95, misses


def test_size_and_position_words_follow_the_pixels():
    scene = data.Scene((data.Thing("red", "square", (2, 40, 20, 58)),), "blue", size="small", position="bottom left")
    reading = measure.read(data.draw(scene, size=(64, 64)))
    assert (reading.size, reading.position, reading.count) == ("small", "bottom left", 1)
    assert scenes.size_word(0.2) == "tiny" and scenes.size_word(0.65) == "large"
    assert scenes.slot(1, 30) == "low" and scenes.slot(10, 10) == "mid" and scenes.slot(30, 1) == "high"


def test_the_frame_measure_sees_a_painted_frame_and_not_a_drawn_image():
    scene = data.one_shape("red", "circle", "blue", (64, 64), (32, 32), 20)
    clean = data.draw(scene, size=(64, 64))
    assert frame.ring_deviation(clean) == (0.0, 0.0)
    framed = np.asarray(clean).copy()
    framed[:2, :] += 8
    framed[-2:, :] += 8
    framed[:, :2] += 8
    framed[:, -2:] += 8
    outer, inner = frame.ring_deviation(Image.fromarray(framed))
    assert outer == 8.0 and inner == 0.0
