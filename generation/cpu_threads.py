"""How many torch CPU threads to use when nobody said: one declaration for the bot, the worker and the CLI."""

from __future__ import annotations

from collections.abc import Iterable

# The shipped model: a 4M-parameter UNet at 64×64 spends more time handing work between threads than
# computing, so one thread is faster on any machine, and on a loaded one by far (README, Benchmarks).
SINGLE_THREAD_MODELS = frozenset({"tinyshapes"})


def default_cpu_threads(models: Iterable[str]) -> int | None:
    """1 when every model named is a small one that one thread renders fastest; None (torch's default,
    one thread per core) as soon as any other model may be loaded."""
    names = list(models)
    if names and all(name in SINGLE_THREAD_MODELS for name in names):
        return 1
    return None
