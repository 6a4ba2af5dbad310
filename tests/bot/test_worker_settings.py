"""`python -m bot.worker` applies the same CPU-thread default as `python -m bot` (issue 20.7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import bot.worker as worker_module
from bot.settings import Settings


@pytest.mark.parametrize("cpu_threads, expected", [(None, 1), ("3", 3)])
def test_the_worker_takes_the_models_cpu_thread_default(cpu_threads, expected, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("CPU_THREADS", "MODEL", "EXTRA_MODELS", "MODELS_FILE"):
        monkeypatch.delenv(name, raising=False)
    if cpu_threads is not None:
        monkeypatch.setenv("CPU_THREADS", cpu_threads)
    started: list[Settings] = []

    async def fake_run_worker(settings: Settings, stop: asyncio.Event) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(worker_module, "run_worker", fake_run_worker)
    monkeypatch.setattr(worker_module, "configure_logging", lambda level: None)
    monkeypatch.setattr(worker_module, "apply_log_format", lambda handler, settings: None)
    assert worker_module.main() == 0
    assert [settings.cpu_threads for settings in started] == [expected]  # the shipped tiny model declares 1
