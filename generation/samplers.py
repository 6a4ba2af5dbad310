"""A1111 sampler names mapped to diffusers schedulers.

Each scheduler is built from the loaded model's own scheduler config (betas, prediction type,
timestep spacing), with only the flags that define the sampler changed, following the table in
diffusers' scheduler docs ("A1111/k-diffusion -> diffusers").
"""

from __future__ import annotations

import warnings
from typing import Any

# torchsde compares float32 and float64 copies of the same time and warns about the rounding
# difference ("Should have ta>=t0"); the Brownian tree is unaffected.
warnings.filterwarnings("ignore", message="Should have ta>=t0", module="torchsde")


_NO_KARRAS = {"use_karras_sigmas": False}
_KARRAS = {"use_karras_sigmas": True}

# name -> (diffusers scheduler class name, config overrides); diffusers is imported only when building one,
# so the bot can import request validation without loading torch.
_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", _NO_KARRAS),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, **_NO_KARRAS}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, **_KARRAS}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **_KARRAS},
    ),
    # DPMSolverSDEScheduler draws its noise from torchsde's Brownian tree, seeded per image below.
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", _KARRAS),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", _NO_KARRAS),
    "LMS": ("LMSDiscreteScheduler", _NO_KARRAS),
    "LMS Karras": ("LMSDiscreteScheduler", _KARRAS),
}

SAMPLERS: tuple[str, ...] = tuple(_SAMPLERS)


def make_scheduler(name: str, model_config: Any, *, seed: int) -> Any:
    """Build sampler `name` from the model's scheduler config.

    `seed` seeds samplers that keep their own random state (DPM++ SDE's Brownian tree); the others
    draw their noise from the pipeline's generator.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}. Available samplers: {', '.join(SAMPLERS)}.")
    import diffusers

    class_name, overrides = _SAMPLERS[name]
    scheduler_class = getattr(diffusers, class_name)
    if class_name == "DPMSolverSDEScheduler":
        overrides = {**overrides, "noise_sampler_seed": seed}
    return scheduler_class.from_config(model_config, **overrides)
