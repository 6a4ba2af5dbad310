"""`python -m generation.worker`: one render worker of the shared queue (one process per GPU).

It reads the render settings (generation.settings.RenderSettings, from .env / the environment):
DATABASE_URL (PostgreSQL, the shared queue), IMAGE_STORE (where images go; every machine must see the same
one), MODEL / EXTRA_MODELS / MODELS_FILE (what it can render), DEVICE, DTYPE, CPU_THREADS, LEASE_S,
WORKER_ID, WORKER_JOBS, BATCH_IMAGES, NSFW_CLASSIFIER, METRICS_PORT, LOG_FORMAT. It imports nothing of the
bot and opens no Discord connection: it claims jobs, renders them, stores the images and marks them done;
the gateway posts them. The worker itself is `generation.queue.worker.RenderWorker`; this module wires it.
SIGINT / SIGTERM stop it: a job in flight is dropped and its lease expires, so another worker renders it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from storage import Store

from .queue.assembly import build_finisher, build_service, worker_config
from .queue.worker import RenderWorker
from .settings import RenderSettings
from .telemetry import Metrics, Role, apply_log_format, configure_logging, database_check, event_check, start_health

log = logging.getLogger(__name__)

EXIT_NOT_SHARED = 2  # DATABASE_URL is not PostgreSQL: there is no shared queue to claim from


async def run_worker(settings: RenderSettings, stop: asyncio.Event, metrics: Metrics | None = None) -> int:
    """`metrics`: the process's (built here unless given); METRICS_PORT serves it with /healthz and /readyz."""
    metrics = metrics if metrics is not None else Metrics(Role.WORKER)
    store = await Store.open(settings.resolved_database_url, settings.data_dir, image_store=settings.image_store)
    model_loaded = asyncio.Event()
    health = await start_health(metrics, {"database": database_check(store.ping), "model": event_check(model_loaded)},
                                port=settings.metrics_port, host=settings.metrics_host)
    try:
        if not store.shared:
            print("generation.worker needs the shared queue on PostgreSQL: set DATABASE_URL=postgresql+asyncpg://...",
                  file=sys.stderr)
            return EXIT_NOT_SHARED
        service = build_service(settings)
        service.metrics = metrics
        await service.start()
        # Load the default model now: the first claimed job should not pay for it (and it is "loaded").
        model = settings.default_model  # MODELS_FILE's first, else MODEL
        load_s = await service.load_model(model)
        log.info("loaded %s in %.1fs", model, load_s)
        metrics.model_load_finished(model, load_s)
        model_loaded.set()
        worker = RenderWorker(store, service, build_finisher(settings, service), worker_config(settings),
                              metrics=metrics)
        worker.loaded_model = model
        try:
            await worker.start()
            print(f"worker {worker.worker_id} ready", flush=True)
            await stop.wait()
        finally:
            await worker.close()
            await service.close()
    finally:
        if health is not None:
            await health.stop()
        await store.close()
    return 0


def main() -> int:
    settings = RenderSettings().with_cpu_thread_default()  # the same CPU-thread default as the bot
    apply_log_format(configure_logging(settings.log_level), settings.log_format, settings.log_salt)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await run_worker(settings, stop)

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
