"""The model entry's max_size: read from a models file, carried to ModelInfo, checked with the family rules."""

from __future__ import annotations

import pytest

from generation import RequestError
from generation.families import read_model_info
from generation.models_file import ModelConfigError, spec_from_mapping


def test_a_models_file_entry_declares_its_max_size_and_requests_over_it_are_refused():
    spec = spec_from_mapping("tinyshapes", {"max_size": 64})
    info = read_model_info(spec)
    assert info.max_size == 64
    from generation import GenerationRequest

    info.family.check_request(GenerationRequest("a red circle", width=64, height=64, sampler="DPM++ 2M"), info)
    with pytest.raises(RequestError, match=r"draws at most 64 pixels a side .* 72×64 is larger"):
        info.family.check_request(GenerationRequest("a red circle", width=72, height=64, sampler="DPM++ 2M"), info)
    with pytest.raises(ModelConfigError, match="max_size must be a multiple of 8"):
        spec_from_mapping("tinyshapes", {"max_size": 65})


def test_an_edit_canvas_past_the_models_limit_for_pictures_is_shrunk_to_fit_it():
    from generation import Limits
    from generation.editing import canvas_size
    from generation.size_limits import picture_limits

    limits = picture_limits(Limits(max_size=1024), 88)  # the shipped model: 2 × 88 a side from a picture
    assert limits.max_size == 176 and picture_limits(Limits(max_size=128), 88).max_size == 128
    assert picture_limits(Limits(), None) == Limits()
    assert canvas_size("pan", (128, 128), limits, direction="right") == (176, 112)  # 192×128, scaled to fit
    assert canvas_size("zoom", (88, 48), limits, factor=2.0) == (176, 96)
