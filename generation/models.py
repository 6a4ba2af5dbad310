"""Where a model name points (the shipped tinyshapes folder, a local folder or checkpoint, or a hub id),
per-model configuration (`ModelSpec`; the TOML models file is read by generation.models_file), and
what a model can do beyond rendering (`Capabilities`: its describer, its blend prompt, its CPU threads).

Product code asks a model entry for its capabilities; it never checks a model's name.
Nothing here imports torch or diffusers.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .request import RequestError

TINYSHAPES_DIR = Path(__file__).resolve().parent / "tinyshapes" / "weights"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# The describers a model entry may declare (generation.describe): "shapes" reads one shape on one
# background from the pixels, with the colours and shapes of the shipped model's vocabulary.
DESCRIBERS = ("shapes",)


@dataclass(frozen=True)
class Capabilities:
    """What a model entry declares beyond rendering; a model without an entry declares nothing."""

    describer: str | None = None  # /describe without a captioning model (one of DESCRIBERS)
    blend_prompt: bool = False  # a /blend without a prompt is told what the describer reads in its sources
    cpu_threads: int | None = None  # CPU_THREADS left empty and only such models configured: this many


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

    def request_defaults(self) -> dict[str, Any]:
        """GenerationRequest fields configured for this model (a bare source configures none)."""
        return {}

    def forced_family(self) -> str | None:
        """The family key an operator forced (None: read from model_index.json)."""
        return None

    def dtype_setting(self) -> str | None:
        """The dtype an operator set for this model (None: the renderer's setting)."""
        return None

    def size_limit(self) -> int | None:
        """The longest side members may ask of this model (None: only the operator's limits)."""
        return None

    def capabilities(self) -> Capabilities:
        """What this model can do beyond rendering (a bare path or hub id: nothing declared)."""
        return Capabilities()


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
    max_size: int | None = None  # the longest side members may ask for (generation.size_limits)
    negative_prompt: str | None = None
    true_cfg_scale: float | None = None  # Flux: true CFG used with a negative prompt (1 = refuse them)
    dtype: str | None = None  # auto, float16, bfloat16, float32 (default: the renderer's setting)
    describer: str | None = None  # see Capabilities
    blend_prompt: bool = False
    cpu_threads: int | None = None
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

    def forced_family(self) -> str | None:
        return self.family

    def dtype_setting(self) -> str | None:
        return self.dtype

    def size_limit(self) -> int | None:
        return self.max_size

    def capabilities(self) -> Capabilities:
        return Capabilities(self.describer, self.blend_prompt, self.cpu_threads)


BUILTIN_MODELS: dict[str, ModelSource] = {
    # Today's request defaults are tinyshapes' own: 20 steps, CFG 5, DPM++ 2M. It draws one shape on one
    # background, so it describes pictures (and blends' sources) by reading them; a 4M-parameter UNet at
    # 64x64 spends more time handing work between threads than computing: one thread is faster on any
    # machine, and on a loaded one by far (README, Benchmarks). Its trained sizes reach 88 pixels a side
    # (the 16:9 bucket, 88×48; generation/tinyshapes/weights/training_state.json).
    "tinyshapes": ModelSpec(
        "tinyshapes", str(TINYSHAPES_DIR), display_name="tinyshapes", steps=20, guidance=5.0, sampler="DPM++ 2M",
        describer="shapes", blend_prompt=True, cpu_threads=1, max_size=88,
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
