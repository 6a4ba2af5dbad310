"""Operating it: the log format (LOG_FORMAT, LOG_SALT) and the metrics/health port (METRICS_PORT) of the
gateway and of each render worker, with their readiness checks.

The composition roots (`bot.app` for the gateway, `bot.worker` for a worker) build one `Metrics`, inject
it where events happen, and call `start_health` with the checks that say the process can serve.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from generation.telemetry import HealthServer, JsonFormatter, Metrics, ReadinessCheck

if TYPE_CHECKING:
    import discord

    from bot.settings import Settings
    from storage import Store

log = logging.getLogger(__name__)


def apply_log_format(handler: logging.Handler, settings: Settings) -> None:
    """LOG_FORMAT=json: one JSON object per line on `handler`; LOG_SALT salts the owner hash in job lines."""
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(salt=settings.log_salt))


def database_check(store: Store) -> ReadinessCheck:
    async def database() -> bool:
        await store.ping()  # raises (its reason in the body) when the database is unreachable
        return True

    return database


def event_check(event: asyncio.Event) -> ReadinessCheck:
    """Ready once `event` is set (the model loaded)."""
    async def model() -> bool:
        return event.is_set()

    return model


def gateway_check(client: discord.Client) -> ReadinessCheck:
    async def gateway() -> bool:
        return client.is_ready() and not client.is_closed()

    return gateway


async def start_health(settings: Settings, metrics: Metrics, checks: dict[str, ReadinessCheck],
                       ) -> HealthServer | None:
    """Listen on METRICS_PORT (None: off) with `checks` behind /readyz; the caller stops the server."""
    if settings.metrics_port is None:
        return None
    server = HealthServer(metrics, host=settings.metrics_host, port=settings.metrics_port)
    for name, check in checks.items():
        server.add_check(name, check)
    await server.start()
    return server
