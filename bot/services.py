"""What the Discord layer works with, wired once in `bot.app`: the store, the render queue (in-process or
shared; the handlers cannot tell), the settings, the finish step (NSFW_CLASSIFIER) and the waiter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from generation.telemetry import Metrics

if TYPE_CHECKING:
    from bot.settings import Settings
    from generation.queue import RenderQueue, Waiter
    from generation.queue.finish import Finisher
    from storage import Store


@dataclass
class Services:
    store: Store
    queue: RenderQueue
    settings: Settings
    finisher: Finisher  # how renders are finished; its `classifier` is NSFW_CLASSIFIER's
    waiter: Waiter  # the queue's waits on outside work (SimCord: external waits)
    metrics: Metrics = field(default_factory=Metrics)  # this process's; built once in bot.app
