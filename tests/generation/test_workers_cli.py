"""`python -m generation.workers`: the operator's list of render workers and the shared queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.workers import report
from storage import Store


@pytest.mark.system(reason="PostgreSQL")
async def test_lists_workers_with_models_current_job_throughput_and_heartbeat(postgres_database: str,
                                                                               tmp_path: Path) -> None:
    store = await Store.open(postgres_database, tmp_path / "data")
    try:
        await store.register_worker("gpu-a0", host="box-a", models=["tinyshapes", "sdxl"], max_size=1024)
        await store.register_worker("gpu-b0", host="box-b", models=["tinyshapes"], max_size=512)
        job = await store.create_generation(owner_id=1, guild_id=None, channel_id=None, kind="imagine", parent_id=None,
                                            params={"prompt": "a red circle", "model": "tinyshapes", "count": 2})
        await store.create_generation(owner_id=2, guild_id=None, channel_id=None, kind="imagine", parent_id=None,
                                      params={"prompt": "a blue square", "model": "tinyshapes", "count": 1})
        claimed, _ = await store.claim("gpu-a0", models=["tinyshapes"], max_size=1024, loaded_model="tinyshapes",
                                       lease_s=60)
        await store.worker_heartbeat("gpu-a0", loaded_model="tinyshapes", current_jobs=[job.id], jobs_done=3,
                                     images_done=6, render_s=3.0)
        await store.worker_heartbeat("gpu-b0", loaded_model=None, current_jobs=[], stopped=True)
    finally:
        await store.close()
    assert [record.id for record in claimed] == [job.id]
    lines = (await report(postgres_database)).splitlines()
    assert lines[0].split()[:3] == ["worker", "host", "state"]
    a0 = next(line for line in lines if line.startswith("gpu-a0"))
    assert a0.split()[:8] == ["gpu-a0", "box-a", "rendering", "tinyshapes*,sdxl", f"#{job.id}", "3", "6", "2.00"]
    assert next(line for line in lines if line.startswith("gpu-b0")).split()[2] == "stopped"
    assert lines[-1] == "queue: 1 rendering, 1 waiting"


async def test_says_so_without_postgresql(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'imagine.db'}"
    assert "not PostgreSQL" in await report(url)
