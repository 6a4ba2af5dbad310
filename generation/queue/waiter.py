"""The one seam between the render queue and a test harness: waits on work from outside the process.

The queue waits for new jobs, for a render on its worker thread, for a notification from PostgreSQL. In
production these are plain awaits. A simulator (SimCord) wants to tell such a wait, which is the queue
being idle, from a hung bot: it passes a Waiter whose `idle` declares the wait external. The Waiter is
built once, where the app is wired, and handed to the queue; nothing below the queue knows of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Waiter:
    """Plain awaits (production)."""

    async def idle(self, awaitable: Awaitable[T]) -> T:
        """Wait for `awaitable`, something that completes because of work outside this task."""
        return await awaitable


class CallbackWaiter(Waiter):
    """A Waiter that hands each wait to `wrap` (e.g. SimCord's `env.external_wait`)."""

    def __init__(self, wrap: Callable[[Awaitable[Any]], Awaitable[Any]]) -> None:
        self._wrap = wrap

    async def idle(self, awaitable: Awaitable[T]) -> T:
        result: T = await self._wrap(awaitable)
        return result


PLAIN = Waiter()
