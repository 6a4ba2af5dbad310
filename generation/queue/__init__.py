"""The render queue: one interface (`RenderQueue`), two peer implementations, one way to finish a render.

Only this package (with the worker entry point) touches storage; the rest of `generation` knows nothing of
it. This module imports nothing that does, so the scheduler and the interface load without a database:
import `generation.queue.local`, `.shared`, `.worker` and `.finish` by their full names.
"""

from .admission import Admission, Reservation
from .interface import JobWatcher, RenderQueue
from .renderer import RendererLike
from .waiter import PLAIN, CallbackWaiter, Waiter

__all__ = ["PLAIN", "Admission", "CallbackWaiter", "JobWatcher", "RenderQueue", "RendererLike", "Reservation",
           "Waiter"]
