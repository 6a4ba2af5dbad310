"""generation.editing: the canvas, mask and size an edit derives from its recorded parameters (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation import GenerationRequest, Limits, RequestError
from generation.editing import (blend_sources, blend_strip, canvas_size, edit_canvas, edit_request, parse_region,
                                soft_mask)


def _source(width: int = 64, height: int = 64) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize(("mode", "options", "size"), [
    ("zoom", {"factor": 2.0}, (128, 128)), ("zoom", {"factor": 1.5}, (96, 96)), ("zoom", {"factor": 1.3}, (88, 88)),
    ("pan", {"direction": "right"}, (96, 64)), ("pan", {"direction": "up"}, (64, 96)), ("square", {}, (64, 64)),
])
def test_canvas_sizes_are_multiples_of_8(mode, options, size):
    assert canvas_size(mode, (64, 64), Limits(), **options) == size


def test_sd3_and_flux_canvases_are_multiples_of_16():
    assert canvas_size("zoom", (64, 64), Limits(), factor=1.3, multiple=16) == (96, 96)
    assert canvas_size("pan", (80, 48), Limits(), direction="down", multiple=16) == (80, 80)


def test_a_canvas_too_large_for_the_limits_is_shrunk_and_the_source_with_it():
    limits = Limits(max_size=1024, max_pixels=1024 * 1024)
    assert canvas_size("zoom", (768, 768), limits, factor=2.0) == (1024, 1024)
    source = _source(96, 96)
    request = GenerationRequest("x", width=128, height=128, edit_mode="zoom", edit_factor=2.0)
    canvas, mask = edit_canvas(source, request.replace(width=96 * 2 - 64, height=96 * 2 - 64))
    assert canvas.size == mask.size == (128, 128)
    assert (np.asarray(mask) == 0).sum() == 64 * 64  # the source, scaled to fit at half the canvas


@pytest.mark.parametrize(("direction", "box"), [("right", (0, 0, 64, 64)), ("left", (32, 0, 96, 64))])
def test_pan_keeps_the_source_against_the_far_side(direction, box):
    source = _source()
    request = GenerationRequest("x", width=96, height=64, edit_mode="pan", edit_direction=direction)
    canvas, mask = edit_canvas(source, request)
    x0, y0, x1, y1 = box
    assert np.array_equal(np.asarray(canvas)[y0:y1, x0:x1], np.asarray(source))
    assert (np.asarray(mask)[y0:y1, x0:x1] == 0).all() and (np.asarray(mask) == 255).sum() == 32 * 64


def test_region_masks_the_chosen_cells_and_the_feather_never_touches_known_pixels():
    request = GenerationRequest("x", width=64, height=64, edit_mode="region", edit_region="4")
    canvas, mask = edit_canvas(_source(), request)
    hard = np.asarray(mask) > 0
    assert hard[21:42, 21:42].all() and hard.sum() == 21 * 21
    soft = np.asarray(soft_mask(mask))
    assert (soft[~hard] == 0).all() and soft[31, 31] == 255 and 0 < soft[21, 31] < 255
    assert parse_region("8+0+4") == (0, 4, 8)
    with pytest.raises(RequestError):
        parse_region("9")


def test_edit_requests_record_their_parameters_and_validate():
    import io

    buffer = io.BytesIO()
    _source(64, 48).save(buffer, format="PNG")
    base = GenerationRequest("a red circle", width=64, height=48, seed=5, count=4)
    zoom = edit_request(base, buffer.getvalue(), 6, "zoom", Limits(), factor=2.0)
    assert (zoom.width, zoom.height, zoom.seed, zoom.count, zoom.edit_factor) == (128, 96, 6, 1, 2.0)
    square = edit_request(base, buffer.getvalue(), 6, "square", Limits())
    assert (square.width, square.height) == (64, 64)
    region = edit_request(base, buffer.getvalue(), 6, "region", Limits(), region="0+1", prompt="a blue square")
    assert region.seed is None and region.edit_region == "0+1" and region.prompt == "a blue square"
    with pytest.raises(RequestError):
        edit_request(base, buffer.getvalue(), 6, "zoom", Limits(), factor=2.5)


def test_a_blend_strip_holds_its_sources_side_by_side():
    images = [_source(), _source(32, 32), _source(80, 40)]
    strip = blend_strip(images, 64, 64)
    assert strip.size == (192, 64) and len(blend_sources(strip, 64, 64)) == 3
    with pytest.raises(RequestError):
        blend_sources(strip.crop((0, 0, 64, 64)), 64, 64)
