"""Where a model name points (the shipped tinyshapes folder, a local folder or checkpoint, or a hub id),
and per-model configuration (`ModelSpec`, read from a TOML file with `load_model_specs`).

Nothing here imports torch or diffusers.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .request import RequestError

TINYSHAPES_DIR = Path(__file__).resolve().parent / "tinyshapes" / "weights"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFound(RequestError):
    """A model's path does not exist, or its hub id cannot be reached; the message says which."""


@dataclass(frozen=True)
class ModelSource:
    """A loadable model.

    `path` is a diffusers folder, a hub id, or a single .safetensors/.ckpt checkpoint. A checkpoint
    needs `config`: a diffusers folder (or hub id) with the matching component configs and tokenizer,
    because diffusers can only guess the configs of the standard SD architectures, from the hub.
    """

    name: str
    path: str
    config: str | None = None

    @property
    def is_single_file(self) -> bool:
        return self.path.endswith(SINGLE_FILE_SUFFIXES)

    @property
    def config_source(self) -> str:
        """Folder or hub id holding model_index.json, component configs and the tokenizer."""
        return self.config or self.path

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class ModelSpec(ModelSource):
    """A configured model: where it loads from plus what an operator set for it.

    Every default left None falls back to the model's family (see generation.families): e.g. SDXL
    30 steps, CFG 7, DPM++ 2M Karras; Flux.1-dev 28 steps, guidance 3.5, Euler.
    """

    display_name: str | None = None  # shown to users ("SDXL Lightning"); default: name
    family: str | None = None  # force a family: sd, sdxl, sd3, flux (default: from model_index.json)
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    size: int | None = None  # native square side: the default size and the base for --ar
    negative_prompt: str | None = None
    true_cfg_scale: float | None = None  # Flux: true CFG used with a negative prompt (1 = refuse them)
    dtype: str | None = None  # auto, float16, bfloat16, float32 (default: the renderer's setting)
    ip_adapter: str | None = None  # SD 1.x/SDXL: IP-Adapter weights in IP_ADAPTER_DIR for --sref/--oref

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def request_defaults(self) -> dict[str, Any]:
        """GenerationRequest fields this spec sets (only those given)."""
        values = {
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "sampler": self.sampler,
            "negative_prompt": self.negative_prompt,
        }
        return {key: value for key, value in values.items() if value is not None}


BUILTIN_MODELS: dict[str, ModelSource] = {
    # Today's request defaults are tinyshapes' own: 20 steps, CFG 5, DPM++ 2M.
    "tinyshapes": ModelSpec(
        "tinyshapes", str(TINYSHAPES_DIR), display_name="tinyshapes", steps=20, guidance=5.0, sampler="DPM++ 2M"
    )
}


def model_source(name: str | ModelSource) -> ModelSource:
    """Look up a built-in model name; any other string is used as a path or hub id."""
    if isinstance(name, ModelSource):
        return name
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name]
    return ModelSource(name, name)


def resolve_model(name: str) -> str:
    """The path (or hub id) that model `name` loads from."""
    return model_source(name).path


# -- is it there? (cheap checks, before torch) --


def looks_like_hub_id(path: str) -> bool:
    return bool(_HUB_ID.match(path)) and not path.endswith(SINGLE_FILE_SUFFIXES) and not Path(path).exists()


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, as huggingface_hub read it (the library owns that setting)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cached(repo_id: str) -> bool:
    """Whether the hub id's model_index.json is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of diffusers
        return False
    found = try_to_load_from_cache(repo_id, "model_index.json")
    return isinstance(found, str)


def hub_reachable(timeout: float = 3.0) -> bool:
    """One short TCP connection to the hub: huggingface_hub would otherwise retry for minutes."""
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    host = re.sub(r"^\w+://", "", endpoint).split("/")[0]
    host, _, port = host.partition(":")
    done, reached = threading.Event(), threading.Event()

    def connect() -> None:
        try:
            socket.create_connection((host, int(port or 443)), timeout=timeout).close()
            reached.set()
        except (OSError, ValueError):
            pass
        finally:
            done.set()

    # In a daemon thread: the timeout above does not cover a slow DNS lookup.
    threading.Thread(target=connect, daemon=True, name="hub-probe").start()
    done.wait(timeout + 0.5)
    return reached.is_set()


def check_source(source: ModelSource, *, probe_network: bool = False) -> str:
    """'folder', 'file' or 'hub'; ModelNotFound (a RequestError) with a one-line reason otherwise.

    A hub id is accepted offline (HF_HUB_OFFLINE=1) only when it is in the local cache. With
    `probe_network`, a hub id that is not cached must also be reachable (one 3-second connection).
    """
    label = source.label
    for what, path in (("config folder", source.config), ("path", source.path)):
        if path is None:
            continue
        local = Path(path).expanduser()
        if local.exists():
            if local.is_dir() and not any((local / name).exists() for name in ("model_index.json", "unet/config.json")):
                raise ModelNotFound(
                    f"Model {label!r}: {path} is a folder without model_index.json, so it is not a diffusers model "
                    "folder (a single-file checkpoint must end in .safetensors or .ckpt)."
                )
            continue
        if not looks_like_hub_id(path):
            raise ModelNotFound(f"Model {label!r}: no such file or folder: {path}")
        if hub_cached(path):
            continue
        if hub_offline():
            raise ModelNotFound(
                f"Model {label!r}: {path} looks like a Hugging Face hub id, but HF_HUB_OFFLINE is set and it is "
                "not in the local cache; download it first or give a local folder."
            )
        if probe_network and not hub_reachable():
            raise ModelNotFound(
                f"Model {label!r}: {path} looks like a Hugging Face hub id, but the hub cannot be reached "
                "(no network?) and it is not in the local cache."
            )
    if source.is_single_file:
        return "file"
    return "folder" if Path(source.path).expanduser().exists() else "hub"


# -- per-model configuration (TOML) --


class ModelConfigError(ValueError):
    """The models file is wrong; the message names the file, the model and the key."""


_SPEC_KEYS = {f.name for f in fields(ModelSpec)} - {"name"}
_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,), "config": (str,), "display_name": (str,), "family": (str,), "steps": (int,),
    "guidance": (int, float), "sampler": (str,), "size": (int,), "negative_prompt": (str,),
    "true_cfg_scale": (int, float), "dtype": (str,), "ip_adapter": (str,),
}


def spec_from_mapping(name: str, values: dict[str, Any], *, base_dir: Path | None = None, where: str = "") -> ModelSpec:
    """A ModelSpec from one [models.NAME] table; ModelConfigError on unknown keys or bad values."""
    from .families import FAMILIES  # light: no torch
    from .samplers import SAMPLERS

    where = where or f"model {name!r}"
    unknown = sorted(set(values) - _SPEC_KEYS)
    if unknown:
        raise ModelConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_SPEC_KEYS))}.")
    for key, value in values.items():
        if not isinstance(value, _TYPES[key]) or isinstance(value, bool):
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
    if values.get("dtype") is not None and values["dtype"] not in ("auto", "float16", "fp16", "bfloat16", "float32"):
        raise ModelConfigError(f"{where}: dtype must be auto, float16, bfloat16 or float32, got {values['dtype']!r}.")
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
