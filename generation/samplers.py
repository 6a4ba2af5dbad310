"""A1111 sampler names mapped to diffusers schedulers, per kind of model.

Each scheduler is built from the loaded model's own scheduler config (betas, prediction type,
timestep spacing, flow shift), with only the flags that define the sampler changed, following the
table in diffusers' scheduler docs ("A1111/k-diffusion -> diffusers") and A1111's own settings:

- DDIM: A1111 (ldm's DDIMSampler) never clips the predicted image and uses eta 0; diffusers'
  DDIMScheduler clips to [-1, 1] when a config has no `clip_sample` (SD checkpoints that ship a
  PNDM or DPM++ config), which draws a blob. We always pass clip_sample=False, no thresholding, and
  set_alpha_to_one=False (ldm's last step goes to alphas_cumprod[0], not to 1).
- UniPC: A1111 defaults to variant bh1, order 3; diffusers' bh1 diverges (NaN) with the multistep
  x0-prediction it uses, so we keep diffusers' bh2, order 2, which lands where DPM++ 2M does.
- Euler a, DPM++ SDE: eta 1, as in A1111. DPM++ SDE's Brownian tree is seeded with the image's seed.

Flow-matching models (SD3, Flux) have no betas: their samplers are diffusers' flow-match schedulers
(`FLOW_SAMPLERS`), under an A1111 name only where the method is the same one (Euler, Heun, DPM++ 2M,
UniPC on flow sigmas).
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
SD_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
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
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "thresholding": False, "set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),  # bh2, order 2: see the module docstring
    "Heun": ("HeunDiscreteScheduler", _NO_KARRAS),
    "LMS": ("LMSDiscreteScheduler", _NO_KARRAS),
    "LMS Karras": ("LMSDiscreteScheduler", _KARRAS),
}
_SAMPLERS = SD_SAMPLERS  # the old name

_FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
# Flow matching (SD3, Flux): the same solvers on the flow schedule (sigma = t), shifted like the model's.
FLOW_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Heun": ("FlowMatchHeunDiscreteScheduler", {}),  # no custom sigmas: not for Flux
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, **_FLOW}),
    "UniPC": ("UniPCMultistepScheduler", {"solver_order": 2, **_FLOW}),
}

# Every name any family accepts (the bot's choices); each family says which of them it supports.
SAMPLERS: tuple[str, ...] = tuple(dict.fromkeys([*SD_SAMPLERS, *FLOW_SAMPLERS]))


def make_scheduler(
    name: str, model_config: Any, *, seed: int, table: dict[str, tuple[str, dict[str, Any]]] | None = None
) -> Any:
    """Build sampler `name` from the model's scheduler config, using `table` (default: SD_SAMPLERS).

    `seed` seeds samplers that keep their own random state (DPM++ SDE's Brownian tree); the others
    draw their noise from the pipeline's generator.
    """
    table = SD_SAMPLERS if table is None else table
    if name not in table:
        raise ValueError(f"Unknown sampler {name!r}. Available samplers: {', '.join(table)}.")
    import diffusers

    class_name, overrides = table[name]
    scheduler_class = getattr(diffusers, class_name)
    if class_name == "DPMSolverSDEScheduler":
        overrides = {**overrides, "noise_sampler_seed": seed}
    if overrides.get("use_flow_sigmas"):
        # The flow-match config calls its shift "shift"; the multistep solvers call it "flow_shift".
        overrides = {**overrides, "flow_shift": float(dict(model_config).get("shift", 1.0))}
    return scheduler_class.from_config(model_config, **overrides)
