"""What the command-line tools print: no import noise, and progress that suits where stderr goes."""

from __future__ import annotations

import logging
from typing import Any, Callable, TextIO

# transformers warns once per image-processor class that it falls back to the PIL version when torchvision
# is missing; diffusers imports several at start-up. The PIL versions are what these pipelines use.
_TORCHVISION_FALLBACK = "requires torchvision (not installed); falling back to"


class _DropTorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TORCHVISION_FALLBACK not in record.getMessage()


def silence_torchvision_fallback() -> None:
    """Drop exactly those warnings (every other transformers warning still shows). Call before importing
    diffusers' pipelines."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(existing, _DropTorchvisionFallback) for existing in logger.filters):
        logger.addFilter(_DropTorchvisionFallback())


def step_printer(stream: TextIO) -> Callable[[Any], None] | None:
    """A progress listener that redraws "step i/n" on a terminal; None (print nothing per step) where the
    stream is a file or a pipe, whose reader would get the steps run together on one line."""
    if not stream.isatty():
        return None

    def show(progress: Any) -> None:
        print(f"\rstep {progress.step}/{progress.total}", end="", file=stream, flush=True)

    return show
