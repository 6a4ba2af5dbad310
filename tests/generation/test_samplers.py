"""Every A1111 sampler name maps to a diffusers scheduler that renders reproducibly with the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
from gen_helpers import fast_request

from generation import SAMPLERS
from generation.samplers import make_scheduler

# torchsde's float32/float64 rounding notice (also filtered in generation.samplers; pytest resets filters).
pytestmark = pytest.mark.filterwarnings("ignore:Should have ta>=t0:UserWarning")

REQUIRED = ["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC", "Heun", "LMS"]


def test_the_a1111_names_are_offered():
    assert set(REQUIRED) <= set(SAMPLERS)


@pytest.mark.parametrize(
    "name, class_name, flags",
    [
        ("Euler a", "EulerAncestralDiscreteScheduler", {}),
        ("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
        (
            "DPM++ 2M Karras",
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
        ),
        ("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True, "noise_sampler_seed": 9}),
        ("LMS", "LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    ],
)
def test_sampler_config_flags(renderer, name, class_name, flags):
    model_config = renderer.loaded.txt2img.scheduler.config
    scheduler = make_scheduler(name, model_config, seed=9)
    assert type(scheduler).__name__ == class_name
    assert {key: scheduler.config[key] for key in flags} == flags
    # Built from the model's own schedule, not diffusers' defaults.
    assert scheduler.config.beta_schedule == model_config.beta_schedule
    assert scheduler.config.beta_end == model_config.beta_end


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_renders_reproducibly(renderer, sampler):
    request = fast_request(sampler=sampler, seed=5)
    first, second = renderer.render(request).images[0], renderer.render(request).images[0]
    assert first.image.size == (64, 64)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
