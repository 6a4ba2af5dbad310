"""LISTEN/NOTIFY between the gateway and render workers (PostgreSQL): small payloads, no broker of ours.

| channel | sent by | payload | meaning |
| --- | --- | --- | --- |
| `imagine_work` | gateway | model name | a job was queued: idle workers claim |
| `imagine_progress` | worker | `<id> <step> <total>` | a job's denoising progress |
| `imagine_cancel` | gateway | `<id>` | stop rendering that job (its row is already cancelled) |
| `imagine_done` | worker | `<id> <status>` | a job finished (done, failed, cancelled): the gateway posts it |

A notification is a wake-up, never the truth: receivers read the row. Whoever misses one (a dropped
connection, a restart) finds the same state on its next look at the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

WORK = "imagine_work"
PROGRESS = "imagine_progress"
CANCEL = "imagine_cancel"
DONE = "imagine_done"

Callback = Callable[[str, str], None]  # (channel, payload), called on the event loop


def driver_dsn(url: str) -> str:
    """A plain postgresql:// DSN for asyncpg from a SQLAlchemy URL (postgresql+asyncpg://...)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One dedicated connection that LISTENs on `channels` and calls `callback(channel, payload)`.

    The owner keeps it alive: `await connection_lost()`, then `await reconnect()` (every `retry_s` until
    it succeeds; `on_reconnect` is called then, since notifications sent meanwhile are lost and the
    receiver should look at the database). The owner decides how that wait is awaited (a harness tells
    an idle wait from a hung one), so nothing here knows of harnesses.
    """

    def __init__(self, url: str, channels: Sequence[str], callback: Callback, *,
                 on_reconnect: Callable[[], None] | None = None, retry_s: float = 2.0) -> None:
        self.dsn = driver_dsn(url)
        self.channels = tuple(channels)
        self.callback = callback
        self.on_reconnect = on_reconnect
        self.retry_s = retry_s
        self._connection: Any = None
        self._lost = asyncio.Event()

    async def start(self) -> None:
        await self._connect()

    async def _connect(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        for channel in self.channels:
            await connection.add_listener(channel, self._on_notification)
        connection.add_termination_listener(lambda _connection: self._lost.set())
        self._connection = connection
        self._lost.clear()

    def _on_notification(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        try:
            self.callback(channel, payload)
        except Exception:
            log.exception("notification %s %r: handler failed", channel, payload)

    async def connection_lost(self) -> None:
        """Returns once the LISTEN connection has dropped."""
        await self._lost.wait()

    async def reconnect(self) -> None:
        log.warning("LISTEN connection lost; reconnecting")
        while True:
            try:
                await self._connect()
                break
            except Exception as error:
                log.warning("LISTEN reconnect failed (%s); retrying in %.1fs", error, self.retry_s)
                await asyncio.sleep(self.retry_s)
        if self.on_reconnect is not None:
            self.on_reconnect()

    async def close(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.close(timeout=5)
            except Exception:
                log.info("closing the LISTEN connection failed", exc_info=True)
            self._connection = None
