"""The pipeline's own safety checker verdict (`nsfw_content_detected`) reaches RenderedImage.nsfw."""

from __future__ import annotations

from types import SimpleNamespace

from PIL import Image

from generation.pipeline_call import first_image as _first_image
from generation import RenderedImage


def test_the_safety_checker_verdict_is_passed_through() -> None:
    black = Image.new("RGB", (8, 8))
    assert _first_image(SimpleNamespace(images=[black], nsfw_content_detected=[True])) == (black, True)
    assert _first_image(SimpleNamespace(images=[black], nsfw_content_detected=[False])) == (black, False)
    # No safety checker (tinyshapes, sd-turbo without one): None, or no such field at all.
    assert _first_image(SimpleNamespace(images=[black], nsfw_content_detected=None)) == (black, False)
    assert _first_image(SimpleNamespace(images=[black])) == (black, False)
    assert RenderedImage(black, 1).nsfw is False
