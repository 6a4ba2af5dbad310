"""How many torch CPU threads to use when nobody said: one rule for the bot, the worker, the CLI and the bench.

Each model entry declares it (`Capabilities.cpu_threads`; the shipped tinyshapes: 1, because a
4M-parameter UNet at 64×64 spends more time handing work between threads than computing, README,
Benchmarks); the models configured together get the fewest any declares, or torch's default as soon as
one declares nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .models import ModelSource, model_source
from .models_file import ModelConfigError, load_model_specs


def default_cpu_threads(models: Iterable[str | ModelSource]) -> int | None:
    """What the models' entries declare (the fewest); None (torch's default, one thread per core) as
    soon as one model declares nothing, or when no model is named."""
    declared = [model_source(model).capabilities().cpu_threads for model in models]
    if not declared or any(threads is None for threads in declared):
        return None
    return min(threads for threads in declared if threads is not None)


def configured_cpu_threads(model_names: Iterable[str], models_file: str | Path | None) -> int | None:
    """default_cpu_threads of the models a deployment names, read from its models file where it has one.
    A models file with a problem gives None: the app reports that problem with its name and line."""
    try:
        specs = load_model_specs(models_file) if models_file is not None else {}
    except ModelConfigError:
        return None
    return default_cpu_threads(specs.get(name) or name for name in model_names)
