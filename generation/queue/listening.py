"""Keeping a LISTEN connection (storage.signals.Listener) alive, its waits going through the Waiter."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.signals import Listener

    from .waiter import Waiter


async def keep_listening(listener: Listener, waiter: Waiter) -> None:
    """Reconnect `listener` each time its connection drops (until cancelled)."""
    while True:
        await waiter.idle(listener.connection_lost())
        await listener.reconnect()


async def start_listening(listener: Listener, waiter: Waiter) -> asyncio.Task[None]:
    """Connect `listener` and keep it alive in a task (cancel it, then `listener.close()`)."""
    await listener.start()
    return asyncio.get_running_loop().create_task(keep_listening(listener, waiter), name="pg-listener")
