"""The operator's port: /metrics scraped over HTTP and parsed, /healthz, /readyz; JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from generation.telemetry import HealthServer, JsonFormatter, Metrics, Outcome, Refusal, Role, log_transition
from generation.telemetry.logs import owner_hash


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthServer, str]]:
    server = HealthServer(Metrics(Role.WORKER), host="127.0.0.1", port=0)
    port = await server.start()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) → value, parsed by prometheus_client's parser."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_counters_and_histograms_move_as_jobs_are_recorded(served) -> None:
    server, base = served
    before = await scrape(base)
    assert before[("imagine_refusals_total", (("reason", "nsfw"),))] == 0
    metrics = server.metrics
    for _ in range(3):
        metrics.job_queued(depth=1)
        metrics.job_started("tinyshapes", wait_s=0.3)
        metrics.batch_rendered("tinyshapes", images=2, steps=20, seconds=0.5)
        metrics.job_finished("tinyshapes", Outcome.DONE)
    metrics.job_started("tinyshapes", wait_s=2.0, attempt=2)
    metrics.job_finished("tinyshapes", Outcome.FAILED)
    metrics.model_load_finished("tinyshapes", 1.5)
    metrics.refused(Refusal.BANNED_WORD)
    metrics.delivery_attempt("posted")
    metrics.delivery_fallback()
    metrics.lease_expired(requeued=True)
    metrics.database_error("claim")
    metrics.set_queue(queued=4, running=1)
    after = await scrape(base)
    model = (("model", "tinyshapes"),)
    assert after[("imagine_jobs_finished_total", (("model", "tinyshapes"), ("outcome", "done")))] == 3
    assert after[("imagine_jobs_finished_total", (("model", "tinyshapes"), ("outcome", "failed")))] == 1
    assert after[("imagine_job_transitions_total", (("state", "running"),))] == 4
    assert after[("imagine_images_rendered_total", model)] == 6
    assert after[("imagine_denoising_steps_total", model)] == 120
    per_image = (("batch_size", "2"), ("model", "tinyshapes"))
    assert after[("imagine_render_seconds_per_image_count", per_image)] == 3
    assert after[("imagine_render_seconds_per_image_sum", per_image)] == pytest.approx(0.75)
    assert after[("imagine_render_seconds_per_image_bucket", (*per_image[:1], ("le", "0.25"),
                                                              *per_image[1:]))] == 3
    assert after[("imagine_queue_wait_seconds_count", model)] == 4
    assert after[("imagine_queue_wait_seconds_bucket", (("le", "0.5"), *model))] == 3
    assert after[("imagine_model_load_seconds_sum", model)] == 1.5
    assert after[("imagine_model_loaded", model)] == 1
    assert after[("imagine_refusals_total", (("reason", "banned_word"),))] == 1
    assert after[("imagine_delivery_attempts_total", (("result", "posted"),))] == 1
    assert after[("imagine_delivery_fallbacks_total", ())] == 1
    assert after[("imagine_lease_expiries_total", (("result", "requeued"),))] == 1
    assert after[("imagine_reclaims_total", ())] == 1
    assert after[("imagine_database_errors_total", (("operation", "claim"),))] == 1
    assert after[("imagine_queue_depth", ())] == 4 and after[("imagine_jobs_running", ())] == 1
    assert after[("imagine_process_info", (("role", "worker"),))] == 1


async def test_a_new_model_load_marks_only_it_loaded() -> None:
    metrics = Metrics()
    metrics.model_load_finished("a", 1.0)
    metrics.model_load_finished("b", 2.0)
    loaded = {sample.labels["model"]: sample.value for sample in metrics.model_loaded.collect()[0].samples}
    assert loaded == {"a": 0, "b": 1}


async def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.refused(Refusal.QUOTA)
    assert b'imagine_refusals_total{reason="quota"} 1.0' in first.exposition()
    assert b'imagine_refusals_total{reason="quota"} 0.0' in second.exposition()


async def test_readyz_is_503_until_every_check_passes_and_healthz_is_200(served) -> None:
    server, base = served
    model_loaded = asyncio.Event()

    async def database() -> bool:
        return True

    async def model() -> bool:
        return model_loaded.is_set()

    server.add_check("database", database)
    server.add_check("model", model)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200 and await response.json() == {"status": "alive", "role": "worker"}
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 503
            assert await response.json() == {"status": "not ready",
                                             "checks": {"database": {"ok": True}, "model": {"ok": False}}}
        model_loaded.set()
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ready",
                                             "checks": {"database": {"ok": True}, "model": {"ok": True}}}


async def test_a_check_that_raises_is_a_failed_check_with_its_reason(served) -> None:
    server, base = served

    async def database() -> bool:
        raise ConnectionRefusedError("connection refused")

    server.add_check("database", database)
    async with aiohttp.ClientSession() as session, session.get(f"{base}/readyz") as response:
        assert response.status == 503
        body = await response.json()
    assert body["checks"]["database"] == {"ok": False, "error": "ConnectionRefusedError: connection refused"}


def json_logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.telemetry.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_job_id_through_every_state_change() -> None:
    logger, stream = json_logger()
    owner = 123_456_789_012_345_678
    log_transition(logger, 42, owner, "tinyshapes", None, "queued")
    log_transition(logger, 42, owner, "tinyshapes", "queued", "running", wait_s=0.25, attempt=1)
    log_transition(logger, 42, owner, "tinyshapes", "running", "done", render_s=1.5, images=2)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["job_id"], line.get("from_state"), line["to_state"]) for line in lines] == \
        [(42, None, "queued"), (42, "queued", "running"), (42, "running", "done")]
    assert all(line["owner_hash"] == owner_hash(owner) and line["model"] == "tinyshapes" for line in lines)
    assert str(owner) not in stream.getvalue()
    assert lines[1]["wait_s"] == 0.25 and lines[2]["render_s"] == 1.5
    assert lines[2]["message"] == "job 42: running → done (render_s=1.5 images=2)"
    assert {"time", "level", "logger"} <= set(lines[0]) and lines[0]["level"] == "INFO"


def test_json_lines_keep_exceptions_and_ignore_unknown_extras() -> None:
    logger, stream = json_logger()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("render failed", extra={"job_id": 7, "prompt": "secret words"})
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["job_id"] == 7 and "prompt" not in line and "RuntimeError: boom" in line["exception"]


def test_an_unknown_structured_field_is_refused() -> None:
    logger, _ = json_logger()
    with pytest.raises(ValueError, match="not a structured log field: prompt"):
        log_transition(logger, 1, 2, None, None, "queued", prompt="words")


def test_owner_hashes_are_short_stable_and_salted() -> None:
    assert owner_hash(5, "a") == owner_hash(5, "a") and len(owner_hash(5, "a")) == 12
    assert owner_hash(5, "a") != owner_hash(5, "b") and owner_hash(5, "a") != owner_hash(6, "a")


def test_the_grafana_dashboard_charts_every_metric_and_only_metrics_that_exist() -> None:
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/imagine-bot.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    charted = {name for expr in expressions for name in re.findall(r"\bimagine_[a-z_]+", expr)}
    metrics = Metrics()  # one of each event, so every labelled series has samples
    metrics.job_started("m", 1.0)
    metrics.job_finished("m", Outcome.DONE)
    metrics.batch_rendered("m", images=1, steps=1, seconds=1.0)
    metrics.model_load_finished("m", 1.0)
    metrics.delivery_attempt("posted")
    metrics.database_error("claim")
    exposed = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    assert charted <= exposed, f"charted but never exposed: {sorted(charted - exposed)}"
    families = {family.name for family in Metrics().registry.collect()}
    uncharted = {family for family in families if not any(name.startswith(family) for name in charted)}
    assert uncharted == set()
    histograms = [expr for expr in expressions if "_bucket" in expr]
    assert histograms and all(expr.startswith("histogram_quantile(") and "rate(" in expr for expr in histograms)
    counters = [expr for expr in expressions if "_total" in expr]
    assert counters and all("rate(" in expr for expr in counters)
