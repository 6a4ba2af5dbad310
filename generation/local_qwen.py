"""A Qwen2-style tokenizer and Qwen2-VL processor written locally, for random-weight edit pipelines
(tests, the GPU edit check): no hub needed.

Byte-level BPE without merges (one token per byte) plus Qwen's special tokens, all below id 300, so a
tiny Qwen2.5-VL or Qwen3 config with `vocab_size=QWEN_VOCAB` and the ids in `QWEN_SPECIAL` fits.
"""

from __future__ import annotations

from typing import Any

from .local_tokenizers import _bytes_to_unicode

QWEN_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<think>", "</think>",
)
QWEN_VOCAB = 300
# Qwen's chat format, without tools: what apply_chat_template writes for FLUX.2 [klein].
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def special_ids() -> dict[str, int]:
    """Token id of each special token (256 onwards, after the 256 byte tokens)."""
    return {token: 256 + number for number, token in enumerate(QWEN_SPECIAL)}


def qwen_tokenizer(max_length: int = 1024) -> Any:
    """A Qwen2 tokenizer (tokenizers-backed) over a byte-level BPE without merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {char: byte for byte, char in sorted(_bytes_to_unicode().items())}
    vocab.update(special_ids())
    model = models.BPE(vocab=vocab, merges=[])
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(QWEN_SPECIAL))
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        bos_token=None, model_max_length=max_length,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def qwen_vl_processor(max_pixels: int = 56 * 56) -> Any:
    """A Qwen2-VL processor (image patches of 14, merged 2x2) whose images are at most `max_pixels`."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=max_pixels, patch_size=14,
                                            temporal_patch_size=2, merge_size=2)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=qwen_tokenizer(),
                            chat_template=CHAT_TEMPLATE)


def allow_processor_without_video() -> None:
    """transformers 5 refuses to build a Qwen2-VL processor without a video processor, and cannot build
    one without torchvision; images need none, so accept None for it (once, idempotent)."""
    from transformers import Qwen2VLProcessor

    check = Qwen2VLProcessor.check_argument_for_proper_class
    if getattr(check, "_accepts_no_video", False):
        return

    def accepting(self: Any, name: str, argument: Any) -> Any:
        if name == "video_processor" and argument is None:
            return None
        return check(self, name, argument)

    accepting._accepts_no_video = True  # type: ignore[attr-defined]
    Qwen2VLProcessor.check_argument_for_proper_class = accepting  # type: ignore[method-assign]


def save_processor(processor: Any, folder: Any) -> None:
    """Write a Qwen2-VL processor's tokenizer and image processor (what `load_processor` reads)."""
    processor.tokenizer.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)


def load_processor(folder: str, subfolder: str = "processor") -> Any:
    """A Qwen2-VL processor for images only (no video processor: that needs torchvision)."""
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLProcessor

    allow_processor_without_video()
    image_processor = AutoImageProcessor.from_pretrained(folder, subfolder=subfolder)
    tokenizer = AutoTokenizer.from_pretrained(folder, subfolder=subfolder)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                            chat_template=getattr(tokenizer, "chat_template", None))
