"""Where a model name points: the shipped tinyshapes folder, a local folder or checkpoint, or a hub id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TINYSHAPES_DIR = Path(__file__).resolve().parent / "tinyshapes" / "weights"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


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


BUILTIN_MODELS = {"tinyshapes": ModelSource("tinyshapes", str(TINYSHAPES_DIR))}


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
