"""The models file (MODELS_FILE): per-model configuration in TOML, read into `ModelSpec`s.

Above both generation.models (what a spec is) and generation.families (which family and sampler
names exist), so neither imports the other back.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from .families import FAMILIES
from .models import BUILTIN_MODELS, DESCRIBERS, ModelSpec, looks_like_hub_id
from .samplers import SAMPLERS


class ModelConfigError(ValueError):
    """The models file is wrong; the message names the file, the model and the key."""


_SPEC_KEYS = {f.name for f in fields(ModelSpec)} - {"name"}
_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,), "config": (str,), "display_name": (str,), "family": (str,), "steps": (int,),
    "guidance": (int, float), "sampler": (str,), "size": (int,), "max_size": (int,), "negative_prompt": (str,),
    "true_cfg_scale": (int, float), "dtype": (str,), "describer": (str,), "blend_prompt": (bool,),
    "cpu_threads": (int,), "ip_adapter": (str,),
}


def spec_from_mapping(name: str, values: dict[str, Any], *, base_dir: Path | None = None, where: str = "") -> ModelSpec:
    """A ModelSpec from one [models.NAME] table; ModelConfigError on unknown keys or bad values."""
    where = where or f"model {name!r}"
    unknown = sorted(set(values) - _SPEC_KEYS)
    if unknown:
        raise ModelConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_SPEC_KEYS))}.")
    for key, value in values.items():
        if not isinstance(value, _TYPES[key]) or (isinstance(value, bool) and bool not in _TYPES[key]):
            raise ModelConfigError(f"{where}: {key} must be {' or '.join(t.__name__ for t in _TYPES[key])}, got {value!r}.")
    builtin = BUILTIN_MODELS.get(name)
    if "path" not in values and builtin is None:
        raise ModelConfigError(f"{where}: needs path = a diffusers folder, a hub id or a .safetensors file.")
    values = dict(values)
    for key in ("path", "config"):  # relative paths are relative to the models file
        if key in values and base_dir is not None and not Path(values[key]).expanduser().is_absolute():
            candidate = base_dir / values[key]
            if candidate.exists() or not looks_like_hub_id(values[key]):
                values[key] = str(candidate)
    if values.get("family") is not None and values["family"] not in FAMILIES:
        raise ModelConfigError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {values['family']!r}.")
    if values.get("sampler") is not None and values["sampler"] not in SAMPLERS:
        raise ModelConfigError(f"{where}: unknown sampler {values['sampler']!r}; samplers: {', '.join(SAMPLERS)}.")
    if values.get("steps") is not None and not 1 <= values["steps"] <= 200:
        raise ModelConfigError(f"{where}: steps must be from 1 to 200, got {values['steps']}.")
    if values.get("guidance") is not None and not (math.isfinite(values["guidance"]) and 0 <= values["guidance"] <= 30):
        raise ModelConfigError(f"{where}: guidance must be from 0 to 30, got {values['guidance']}.")
    if values.get("size") is not None and (values["size"] % 8 or not 64 <= values["size"] <= 4096):
        raise ModelConfigError(f"{where}: size must be a multiple of 8 from 64 to 4096, got {values['size']}.")
    if values.get("max_size") is not None and (values["max_size"] % 8 or not 64 <= values["max_size"] <= 4096):
        raise ModelConfigError(f"{where}: max_size must be a multiple of 8 from 64 to 4096, got {values['max_size']}.")
    if values.get("dtype") is not None and values["dtype"] not in ("auto", "float16", "fp16", "bfloat16", "float32"):
        raise ModelConfigError(f"{where}: dtype must be auto, float16, bfloat16 or float32, got {values['dtype']!r}.")
    if values.get("describer") is not None and values["describer"] not in DESCRIBERS:
        raise ModelConfigError(f"{where}: describer must be one of {', '.join(DESCRIBERS)}, got {values['describer']!r}.")
    if values.get("cpu_threads") is not None and values["cpu_threads"] < 1:
        raise ModelConfigError(f"{where}: cpu_threads must be 1 or more, got {values['cpu_threads']}.")
    if builtin is not None:
        base = {f.name: getattr(builtin, f.name) for f in fields(builtin) if f.name != "name"}
        values = {**base, **values}
    return ModelSpec(name, **values)


def load_model_specs(path: str | Path) -> dict[str, ModelSpec]:
    """Read a models file, in the order written (the first model is the default one):

        [models.tinyshapes]              # built in; any key below overrides its defaults

        [models.sdxl]
        display_name = "SDXL 1.0"
        path = "stabilityai/stable-diffusion-xl-base-1.0"   # folder, hub id or .safetensors
        steps = 30
        guidance = 7.0
        sampler = "DPM++ 2M Karras"
        size = 1024
        negative_prompt = "blurry"

        [models.flux-schnell]
        path = "/models/flux1-schnell"
        steps = 4
        guidance = 0

    Relative paths are relative to the file. ModelConfigError names the problem.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{path}: no such models file.") from None
    except tomllib.TOMLDecodeError as error:
        raise ModelConfigError(f"{path}: not valid TOML ({error}).") from None
    models = data.get("models")
    unknown = sorted(set(data) - {"models"})
    if unknown:
        raise ModelConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; put models under [models.NAME].")
    if not isinstance(models, dict) or not models:
        raise ModelConfigError(f"{path}: no models; add at least one [models.NAME] table.")
    specs: dict[str, ModelSpec] = {}
    for name, values in models.items():
        if not isinstance(values, dict):
            raise ModelConfigError(f"{path}: models.{name} must be a table ([models.{name}]).")
        specs[name] = spec_from_mapping(name, values, base_dir=path.parent, where=f"{path}: model {name!r}")
    return specs
