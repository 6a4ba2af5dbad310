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


# A1111's settings, flag by flag (diffusers' scheduler docs table + A1111's sampler options).
A1111_FLAGS = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    # ldm's DDIM: eta 0, never clips x0, last step to alphas_cumprod[0]
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "thresholding": False, "set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {"solver_type": "bh2", "solver_order": 2}),
    "Heun": ("HeunDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
}


def test_every_sampler_is_configured_as_a1111_has_it(renderer):
    assert set(A1111_FLAGS) == set(SAMPLERS)
    # the model's own config, not whatever the previous render's sampler left behind
    model_config = renderer.loaded.scheduler_config
    for name, (class_name, flags) in A1111_FLAGS.items():
        scheduler = make_scheduler(name, model_config, seed=1)
        assert type(scheduler).__name__ == class_name, name
        assert {key: scheduler.config[key] for key in flags} == flags, name


def test_ddim_draws_what_the_other_samplers_draw(renderer):
    # Issue 10: with clipping, DDIM drew a yellow/purple blob where the others drew the red circle.
    request = fast_request(num_inference_steps=20, seed=5)
    reference = np.asarray(renderer.render(request.replace(sampler="DPM++ 2M")).images[0].image, dtype=float)
    for sampler in ("DDIM", "Euler"):
        image = np.asarray(renderer.render(request.replace(sampler=sampler)).images[0].image, dtype=float)
        assert np.abs(image - reference).mean() < 12, sampler


def test_a_sampler_does_not_inherit_the_previous_samplers_flags(renderer):
    request = fast_request(seed=8, sampler="UniPC")
    before = renderer.render(request).images[0].image
    renderer.render(request.replace(sampler="DPM++ 2M Karras"))
    after = renderer.render(request).images[0].image
    assert np.array_equal(np.asarray(before), np.asarray(after))


def test_flow_samplers_take_the_models_shift(tiny_dirs):
    import json

    from generation.samplers import FLOW_SAMPLERS

    config = json.loads((tiny_dirs["sd3"] / "scheduler" / "scheduler_config.json").read_text())
    scheduler = make_scheduler("DPM++ 2M", config, seed=1, table=FLOW_SAMPLERS)
    assert (scheduler.config.use_flow_sigmas, scheduler.config.prediction_type) == (True, "flow_prediction")
    assert scheduler.config.flow_shift == config["shift"] == 3.0
    assert type(make_scheduler("Euler", config, seed=1, table=FLOW_SAMPLERS)).__name__ == "FlowMatchEulerDiscreteScheduler"
