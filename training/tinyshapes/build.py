"""Construction of the tiny model's parts: word-level tokenizer, text encoder, VAE, UNet, scheduler.

Every part is a stock diffusers/transformers class, so the saved folder loads with plain
``StableDiffusionPipeline.from_pretrained(path)`` and no code from this package.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from generation.models import TINYSHAPES_DIR as WEIGHTS_DIR
from generation.vocabulary import FILE_NAME as VOCABULARY_FILE
from generation.vocabulary import Vocabulary

from training.tinyshapes.scenes import (
    COLOURS, COUNTS, POSITION_SYNONYMS, POSITIONS, RELATIONS, SHAPES, SIZE_SYNONYMS, SIZES,
)

from .data import IMAGE_SIZE
MAX_TOKENS = 32
LATENT_CHANNELS = 4
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# Words the model is trained on (every word of the canonical grammar and its synonyms), plus common
# prompt words so they get their own (untrained, hence mostly ignored) token instead of all
# collapsing into the unknown token.
TRAINED_WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    word
    for phrase in (*COLOURS, *SHAPES, *(f"{shape}s" for shape in SHAPES), *SIZES, *SIZE_SYNONYMS, *COUNTS,
                   *RELATIONS, *(phrase for phrase, _, _ in POSITIONS.values()), *POSITIONS, *POSITION_SYNONYMS,
                   "a", "an", "on", "background")
    for word in phrase.split()
))
EXTRA_WORDS = (
    "a an on the background with and of in image picture photo drawing shape colour color "
    "big small large little simple plain dark light bright pink brown gray grey cyan "
    "left right top bottom centre center , ."
).split()
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys([*TRAINED_WORDS, *EXTRA_WORDS]))


def vocabulary_declaration() -> Vocabulary:
    """What ``weights/vocabulary.json`` declares: the words of ``scenes``, synonyms among the function words."""
    return Vocabulary(colours=COLOURS, shapes=SHAPES, sizes=tuple(SIZES),
                      positions={name: phrase for name, (phrase, _, _) in POSITIONS.items()}, counts=tuple(COUNTS),
                      function_words=("a", "an", "on", "background", "and", "left", "of", "above",
                                      *SIZE_SYNONYMS, *POSITION_SYNONYMS))


def _bpe(word: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    """CLIP's BPE: repeatedly merge the adjacent pair with the lowest merge rank."""
    while len(word) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(word, word[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pair = (word[i], word[i + 1])
        merged, j = [], 0
        while j < len(word):
            if j < len(word) - 1 and (word[j], word[j + 1]) == pair:
                merged.append(word[j] + word[j + 1])
                j += 2
            else:
                merged.append(word[j])
                j += 1
        word = tuple(merged)
    return word


def word_level_vocab(words=VOCABULARY) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges for a CLIP BPE tokenizer in which every word is exactly one token.

    Merges are added until BPE turns each word into a single piece; merges made for one word
    can split another, so this loops to a fixed point.
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    symbols = [tuple(w[:-1]) + (w[-1] + "</w>",) for w in words]
    changed = True
    while changed:
        changed = False
        for word in symbols:
            pieces = _bpe(word, ranks)
            if len(pieces) > 1:
                pair = (pieces[0], pieces[1])
                ranks[pair] = len(merges)
                merges.append(pair)
                changed = True
    tokens = [BOS, EOS]
    for word in symbols:
        tokens.extend(word)  # single characters, so unseen words still tokenize into pieces
    tokens.extend(a + b for a, b in merges)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def build_tokenizer() -> CLIPTokenizer:
    vocab, merges = word_level_vocab()
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # pairs, as tokenizers' BPE takes them; the hint says str
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_TOKENS,
    )
    for word in VOCABULARY:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, f"{word!r} tokenizes into {len(ids)} pieces"
    return tokenizer


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=64,
    )
    return CLIPTextModel(config)


def build_vae(scaling_factor: float = 1.0) -> AutoencoderKL:
    # Three blocks = two 2x downsamples: 64 px images <-> 4x16x16 latents.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        scaling_factor=scaling_factor,
        mid_block_add_attention=False,
    )


def build_unet(cross_attention_dim: int = 64) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(48, 96, 96),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
    )


PREDICTION_TYPES = ("epsilon", "v_prediction")  # what the UNet outputs; written into the scheduler config


def build_scheduler(prediction_type: str = "epsilon") -> DPMSolverMultistepScheduler:
    # The noise schedule used in training; every other sampler is made with from_config(this).
    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type=prediction_type,
        timestep_spacing="trailing",
        steps_offset=1,
    )


def assemble(tokenizer, text_encoder, vae, unet, scheduler=None) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler or build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_random_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    return assemble(tokenizer, build_text_encoder(tokenizer), build_vae(), build_unet())


def save_atomically(pipe: StableDiffusionPipeline, target: Path = WEIGHTS_DIR, note: dict | None = None):
    """Write to a sibling temp folder, then swap it in, so readers never see a half-written model."""
    target = Path(target)
    staging = _staging(target)
    pipe.save_pretrained(staging, safe_serialization=True)
    (staging / VOCABULARY_FILE).write_text(json.dumps(vocabulary_declaration().to_dict(), indent=2) + "\n")
    if note is not None:
        (staging / "training_state.json").write_text(json.dumps(note, indent=2) + "\n")
    _swap_in(staging, target)


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".weights-new-", dir=target.parent))


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by the finished ``staging`` folder, so readers never see a half-written model."""
    for path in [staging, *staging.rglob("*")]:  # mkdtemp's folder is private; a model folder is not
        path.chmod(0o755 if path.is_dir() else 0o644)
    old = target.parent / f".weights-old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def replace_vae(source: Path, vae: AutoencoderKL, target: Path, note: dict) -> None:
    """``source``'s model folder with ``vae`` (float16 on disk) in place of its own, written atomically to
    ``target``; ``note`` is added to its training_state.json under "decoder". The rest is copied as is."""
    source, target = Path(source), Path(target)
    staging = _staging(target)
    shutil.copytree(source, staging, dirs_exist_ok=True)
    shutil.rmtree(staging / "vae")
    vae.half().save_pretrained(staging / "vae", safe_serialization=True)
    state_file = staging / "training_state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    state_file.write_text(json.dumps({**state, "decoder": note}, indent=2) + "\n")
    _swap_in(staging, target)


if __name__ == "__main__":
    save_atomically(build_random_pipeline(), note={"stage": "random placeholder"})
    print(f"saved a random-weight placeholder to {WEIGHTS_DIR}")
