"""The operator's port (METRICS_PORT, off by default): /metrics, /healthz and /readyz on one aiohttp app.

`/healthz` answers 200 while the event loop runs (a liveness probe: restart the process if it stops).
`/readyz` runs every readiness check the caller registered — an async callable answering True or False,
e.g. "database" (a `SELECT 1`), "model" (a worker has its model loaded), "gateway" (connected to Discord) —
and answers 200 only when all pass, else 503; the JSON body names each check and its result, so a probe's
log says what is not ready. A check that raises or runs past its timeout counts as failed, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_S = 2.0  # below the usual probe timeout, so a hung check answers 503 rather than nothing


@dataclass
class HealthServer:
    """The app and, once started, its listening site. `port=0` picks a free port (tests)."""

    metrics: Metrics
    host: str = "0.0.0.0"
    port: int = 0
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register a readiness check under a short name (database, model, gateway)."""
        self.checks[name] = check

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_get("/metrics", self._metrics)
        application.router.add_get("/healthz", self._healthz)
        application.router.add_get("/readyz", self._readyz)
        return application

    async def start(self) -> int:
        """Listen; returns the port (the one chosen when `port` is 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses  # the bound (host, port, ...) of each listening socket
        self.port = int(addresses[0][1]) if addresses else self.port
        log.info("metrics and health on http://%s:%d (/metrics, /healthz, /readyz)", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:  # the app closes what it opened with close()
        await self.stop()

    async def readiness(self) -> tuple[bool, dict[str, dict[str, object]]]:
        """Every check's result: (all passed, {name: {"ok": bool, "error"?: str}})."""
        results: dict[str, dict[str, object]] = {}
        names = list(self.checks)
        outcomes = await asyncio.gather(*(asyncio.wait_for(self.checks[name](), CHECK_TIMEOUT_S)
                                          for name in names), return_exceptions=True)
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                reason = "timed out" if isinstance(outcome, TimeoutError) else f"{type(outcome).__name__}: {outcome}"
                results[name] = {"ok": False, "error": reason}
            else:
                results[name] = {"ok": bool(outcome)}
        return all(result["ok"] for result in results.values()), results

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "role": self.metrics.role.value})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, checks = await self.readiness()
        return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                                 status=200 if ready else 503)


async def start_health(metrics: Metrics, checks: dict[str, ReadinessCheck], *, port: int | None,
                       host: str) -> HealthServer | None:
    """Listen on METRICS_PORT (`port`; None: off) with `checks` behind /readyz; the caller stops the server."""
    if port is None:
        return None
    server = HealthServer(metrics, host=host, port=port, checks=dict(checks))
    await server.start()
    return server


def database_check(ping: Callable[[], Awaitable[object]]) -> ReadinessCheck:
    """Ready while `ping` (Store.ping: a `SELECT 1`) answers; it raises, with its reason, when unreachable."""
    async def database() -> bool:
        await ping()
        return True

    return database


def event_check(event: asyncio.Event) -> ReadinessCheck:
    """Ready once `event` is set (the model loaded)."""
    async def model() -> bool:
        return event.is_set()

    return model
