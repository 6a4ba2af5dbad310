"""Operating it, through SimCord: /metrics moves as jobs do, /readyz waits for the model, JSON log lines
follow one job through its states (README "Operating it")."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import build_service
from bot.observability import apply_log_format
from bot.settings import Settings
from bot.worker import run_worker
from generation.telemetry import Metrics, Role


class GatedLoad:
    """A real scheduler whose default-model load waits for the test (as a slow disk would)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    def __call__(self, settings: Settings, waiter: Any) -> Any:
        service = build_service(settings, waiter)
        load = service.load_model

        async def gated_load(model: str) -> float:
            await waiter.idle(self.gate.wait())  # an expected outside wait, not a hung bot
            return await load(model)

        service.load_model = gated_load  # type: ignore[method-assign]
        return service


GATED = GatedLoad()


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page by (name, sorted labels)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.bot(metrics_port=0, metrics_host="127.0.0.1", service=GATED)
async def test_metrics_health_and_json_logs_follow_the_jobs(world) -> None:
    bot = world.bot
    assert bot.health is not None
    port = bot.health.port
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    apply_log_format(handler, Settings(_env_file=None, log_format="json", log_salt="test-salt"))
    jobs_log = logging.getLogger("imagine.jobs")
    jobs_log.addHandler(handler)
    level = jobs_log.level
    jobs_log.setLevel(logging.INFO)
    try:
        assert (await get(port, "/healthz"))[0] == 200
        status, body = await get(port, "/readyz")
        checks = json.loads(body)["checks"]
        assert status == 503 and checks["model"] == {"ok": False}
        assert checks["database"]["ok"] and checks["gateway"]["ok"], checks

        GATED.gate.set()
        await world.env.settle()  # the load is bot work: settled, it is done
        assert bot.model_loaded.is_set()
        status, body = await get(port, "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"

        await world.store.update_guild_config(world.guild.id, banned_words=["cat"])
        first = await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=1)
        await world.bob.slash(world.channel, "imagine", prompt="a blue square", seed=2)
        refused = await world.alice.slash(world.channel, "imagine", prompt="a cat")
        assert refused.response.ephemeral
        await world.env.settle()
        assert first.response.attachments

        status, text = await get(port, "/metrics")
    finally:
        jobs_log.removeHandler(handler)
        jobs_log.setLevel(level)
    assert status == 200
    values = samples(text)
    transitions = {state: values[("imagine_job_transitions_total", (("state", state),))]
                   for state in ("queued", "running", "done", "failed", "cancelled")}
    assert transitions == {"queued": 2, "running": 2, "done": 2, "failed": 0, "cancelled": 0}
    assert values[("imagine_jobs_finished_total", (("model", "tinyshapes"), ("outcome", "done")))] == 2
    assert values[("imagine_refusals_total", (("reason", "banned_word"),))] == 1
    assert values[("imagine_refusals_total", (("reason", "quota"),))] == 0
    assert values[("imagine_queue_wait_seconds_count", (("model", "tinyshapes"),))] == 2
    assert values[("imagine_images_rendered_total", (("model", "tinyshapes"),))] == 2
    assert values[("imagine_denoising_steps_total", (("model", "tinyshapes"),))] == 2 * 4  # default_steps=4
    rendered = sum(value for (name, _), value in values.items() if name == "imagine_render_seconds_per_image_count")
    assert 1 <= rendered <= 2  # one observation per pipeline call: the two jobs may have shared one
    assert values[("imagine_model_load_seconds_count", (("model", "tinyshapes"),))] >= 1
    assert values[("imagine_model_loaded", (("model", "tinyshapes"),))] == 1
    assert values[("imagine_delivery_attempts_total", (("result", "posted"),))] == 2
    assert values[("imagine_process_info", (("role", "bot"),))] == 1

    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    one_job = records[0]["job_id"]  # alice's, queued first
    queued = [record for record in records if record["to_state"] == "queued"]
    assert len(queued) == 2 and queued[0]["owner_hash"] != queued[1]["owner_hash"]  # alice's, bob's
    states = [(record.get("from_state"), record["to_state"]) for record in records if record["job_id"] == one_job]
    assert states == [(None, "queued"), ("queued", "running"), ("running", "done")]
    assert all(record["model"] == "tinyshapes" and len(record["owner_hash"]) == 12 for record in records)
    assert str(world.alice.id) not in lines.getvalue() and str(world.bob.id) not in lines.getvalue()


def test_each_refusal_has_its_reason_label() -> None:
    from bot.intake import PolicyRefusal, refusal_of
    from generation import QueueFull, RequestError
    from generation.telemetry import Refusal

    assert refusal_of(QueueFull("you have 5 jobs queued")) is Refusal.CAPS
    assert refusal_of(RequestError("steps must be at most 50")) is Refusal.VALIDATION
    assert refusal_of(PolicyRefusal("only in #imagine", refusal=Refusal.CHANNEL)) is Refusal.CHANNEL
    assert refusal_of(PolicyRefusal("these models only")) is Refusal.VALIDATION


@pytest.mark.bot(queue_per_user=1)
async def test_a_full_queue_and_a_daily_quota_count_as_caps_and_quota(world, bot_factory) -> None:
    bot_factory.hold_queue()  # the first job stays queued: the member's cap of 1 is full
    await world.alice.slash(world.channel, "imagine", prompt="a red circle", seed=1)
    capped = await world.alice.slash(world.channel, "imagine", prompt="a blue circle", seed=2)
    await world.store.update_guild_config(world.guild.id, daily_quota=1)
    over_quota = await world.bob.slash(world.channel, "imagine", prompt="a green square", seed=3, count=2)
    assert capped.response.ephemeral and over_quota.response.ephemeral
    bot_factory.release_queue()
    await world.env.settle()
    values = samples(world.bot.metrics.exposition().decode())
    refusals = {labels[0][1]: value for (name, labels), value in values.items() if name == "imagine_refusals_total"}
    assert refusals == {"validation": 0, "caps": 1, "quota": 1, "banned_word": 0, "channel": 0, "nsfw": 0}


class WatchedMetrics(Metrics):
    """A worker's metrics that also tell the test when the first claim was made (an event, not a clock)."""

    def __init__(self) -> None:
        super().__init__(Role.WORKER)
        self.first_claim = asyncio.Event()

    def claimed(self, seconds: float) -> None:
        super().claimed(seconds)
        self.first_claim.set()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.system(reason="a render worker on PostgreSQL")
async def test_a_render_worker_serves_its_metrics_and_is_ready_once_its_model_is_loaded(
        postgres_database: str, tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(_env_file=None, database_url=postgres_database, shared_queue=True, data_dir=tmp_path,
                        device="cpu", dtype="float32", cpu_threads=1, metrics_port=port, metrics_host="127.0.0.1",
                        queue_poll_s=0)
    metrics = WatchedMetrics()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, metrics))
    claimed = asyncio.create_task(metrics.first_claim.wait())
    try:
        await asyncio.wait({worker, claimed}, return_when=asyncio.FIRST_COMPLETED)
        assert not worker.done(), worker.result()
        status, body = await get(port, "/readyz")  # claims start only after the model is loaded
        assert status == 200 and json.loads(body)["checks"] == {"database": {"ok": True}, "model": {"ok": True}}
        assert (await get(port, "/healthz")) == (200, json.dumps({"status": "alive", "role": "worker"}))
        values = samples((await get(port, "/metrics"))[1])
        assert values[("imagine_claim_seconds_count", ())] >= 1
        assert values[("imagine_model_loaded", (("model", "tinyshapes"),))] == 1
        assert values[("imagine_model_load_seconds_count", (("model", "tinyshapes"),))] == 1
        assert values[("imagine_process_info", (("role", "worker"),))] == 1
    finally:
        claimed.cancel()
        stop.set()
        assert await worker == 0
