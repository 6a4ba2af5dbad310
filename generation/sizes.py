"""Image sizes: the aspect ratios /imagine offers and the width x height each is rendered at.

The one declaration of both: the bot's choices, `--ar` and the shipped model's training buckets all
read it. Imports nothing of generation (the training code may use it without the render stack).
"""

from __future__ import annotations

import math

# The aspect ratios /imagine offers as choices (any W:H up to 4:1 works through --ar).
ASPECT_RATIOS: tuple[str, ...] = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16")


def size_for_aspect_ratio(ratio_w: int, ratio_h: int, base_size: int, multiple: int = 8) -> tuple[int, int]:
    """A width and height in ratio W:H with about the area of a base_size square, in multiples of
    `multiple` (8 for SD and SDXL; 16 for SD3 and Flux, whose latents are packed)."""
    area = base_size * base_size
    width = math.sqrt(area * ratio_w / ratio_h)
    height = area / width
    return max(multiple, round(width / multiple) * multiple), max(multiple, round(height / multiple) * multiple)
