"""A process's one log handler (the bot's, a render worker's): the human format or LOG_FORMAT=json, the
render libraries' known noise dropped, their progress bars off.

A caller with noise of its own (the bot: discord.py's) passes it, and a colour formatter for terminals.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Literal, TextIO

from .logs import JsonFormatter

# Log records of the render libraries that tell a newcomer nothing they can act on.
RENDER_NOISE = (
    "`accelerate` was not found",  # diffusers: advice for multi-GB models, not the ones loaded here
    "requires torchvision",  # transformers: image processors the text-to-image path never uses
)
QUIET_LOGGERS = ("alembic",)  # INFO lines on every start ("Context impl SQLiteImpl", "Will assume …")
HUMAN_FORMAT = "[{asctime}] [{levelname:<8}] {name}: {message}"


class NoiseFilter(logging.Filter):
    def __init__(self, noise: Iterable[str]) -> None:
        super().__init__()
        self.noise = tuple(noise)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.noise)


def configure_logging(level: str = "INFO", stream: TextIO | None = None, *,
                      terminal_formatter: logging.Formatter | None = None,
                      extra_noise: Iterable[str] = ()) -> logging.Handler:
    """One handler on the root logger (replacing one an earlier call added): `terminal_formatter` only on
    a terminal (colours never go to a file), no known noise.

    diffusers and transformers get no handlers of their own (their records reach this one) and no
    progress bars: the status line already counts steps.
    """
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    if terminal_formatter is not None and _is_terminal(stream):
        handler.setFormatter(terminal_formatter)
    else:
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT, "%Y-%m-%d %H:%M:%S", style="{"))
    handler.addFilter(NoiseFilter((*RENDER_NOISE, *extra_noise)))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_imagine_bot", False):
            root.removeHandler(old)
    handler._imagine_bot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    _quiet_hugging_face()
    return handler


def apply_log_format(handler: logging.Handler, log_format: Literal["human", "json"], salt: str | None) -> None:
    """LOG_FORMAT=json: one JSON object per line on `handler`; LOG_SALT (`salt`) salts the owner hash."""
    if log_format == "json":
        handler.setFormatter(JsonFormatter(salt=salt))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _quiet_hugging_face() -> None:
    try:
        from diffusers.utils import logging as diffusers_logging
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - all three are dependencies
        return
    disable_progress_bars()  # downloads of a hub model
    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.disable_default_handler()  # their records go through the root handler above
        library.enable_propagation()
