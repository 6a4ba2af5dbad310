"""`python -m generation.worker`: the render worker's own entry point, built from RenderSettings alone."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import generation.worker as worker_module
from gen_helpers import samples, scrape
from generation.models import BUILTIN_MODELS
from generation.settings import RenderSettings
from generation.telemetry import Metrics, Role
from postgres_server import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cpu_threads, expected", [(None, 1), ("3", 3)])
def test_the_worker_takes_the_models_cpu_thread_default(cpu_threads, expected, monkeypatch, tmp_path: Path) -> None:
    """The same CPU-thread default as `python -m bot` (issue 20.7)."""
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("CPU_THREADS", "MODEL", "EXTRA_MODELS", "MODELS_FILE"):
        monkeypatch.delenv(name, raising=False)
    if cpu_threads is not None:
        monkeypatch.setenv("CPU_THREADS", cpu_threads)
    started: list[RenderSettings] = []

    async def fake_run_worker(settings: RenderSettings, stop: asyncio.Event) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(worker_module, "run_worker", fake_run_worker)
    monkeypatch.setattr(worker_module, "configure_logging", lambda level: None)
    monkeypatch.setattr(worker_module, "apply_log_format", lambda handler, log_format, salt: None)
    assert worker_module.main() == 0
    assert [settings.cpu_threads for settings in started] == [expected]  # the shipped tiny model declares 1


@pytest.mark.system(reason="a fresh interpreter")
def test_the_worker_imports_nothing_of_the_bot(tmp_path: Path) -> None:
    probe = ("import sys, generation.worker, generation.workers; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bot', 'discord')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


async def test_without_postgresql_it_says_so_and_exits_2(tmp_path: Path, capsys) -> None:
    settings = RenderSettings(_env_file=None, data_dir=tmp_path)  # SQLite: no shared queue
    assert await worker_module.run_worker(settings, asyncio.Event()) == worker_module.EXIT_NOT_SHARED
    assert "DATABASE_URL=postgresql" in capsys.readouterr().err


class WatchedMetrics(Metrics):
    """A worker's metrics that also tell the test when the first claim was made (an event, not a clock)."""

    def __init__(self) -> None:
        super().__init__(Role.WORKER)
        self.first_claim = asyncio.Event()

    def claimed(self, seconds: float) -> None:
        super().claimed(seconds)
        self.first_claim.set()


@pytest.mark.system(reason="a render worker on PostgreSQL")
async def test_a_render_worker_serves_its_metrics_and_is_ready_once_its_model_is_loaded(
        postgres_database: str, tmp_path: Path) -> None:
    port = free_port()
    # A models file whose first model is not MODEL's default: the worker loads (and claims for) that one.
    models_file = tmp_path / "models.toml"
    models_file.write_text(f'[models.shapes]\npath = "{BUILTIN_MODELS["tinyshapes"].path}"\n')
    settings = RenderSettings(_env_file=None, database_url=postgres_database, data_dir=tmp_path, device="cpu",
                              dtype="float32", cpu_threads=1, metrics_port=port, metrics_host="127.0.0.1",
                              queue_poll_s=0, models_file=models_file)
    metrics = WatchedMetrics()
    stop = asyncio.Event()
    worker = asyncio.create_task(worker_module.run_worker(settings, stop, metrics))
    claimed = asyncio.create_task(metrics.first_claim.wait())
    try:
        await asyncio.wait({worker, claimed}, return_when=asyncio.FIRST_COMPLETED)
        assert not worker.done(), worker.result()
        status, body = await scrape(port, "/readyz")  # claims start only after the model is loaded
        assert status == 200 and json.loads(body)["checks"] == {"database": {"ok": True}, "model": {"ok": True}}
        assert (await scrape(port, "/healthz")) == (200, json.dumps({"status": "alive", "role": "worker"}))
        values = samples((await scrape(port, "/metrics"))[1])
        assert values[("imagine_claim_seconds_count", ())] >= 1
        assert values[("imagine_model_loaded", (("model", "shapes"),))] == 1
        assert values[("imagine_model_load_seconds_count", (("model", "shapes"),))] == 1
        assert values[("imagine_process_info", (("role", "worker"),))] == 1
    finally:
        claimed.cancel()
        stop.set()
        assert await worker == 0
