"""The shared queue on PostgreSQL: fair claims across workers, leases, guarded finishing, the workers table.

Leases expire by being claimed with a zero duration (measured on the database's clock): no test sleeps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from storage_helpers import claim_next, queue, rendered, request_params

from storage import GenerationStatus, Store
from storage.repository import LeaseLost

pytestmark = [pytest.mark.asyncio, pytest.mark.system(reason="PostgreSQL")]

ALICE, BOB, CAROL = 1001, 1002, 1003
LONG = 600.0


async def test_claims_go_round_robin_across_owners_whichever_worker_asks(shared: Store) -> None:
    ids = {}
    for owner, n in ((ALICE, 3), (BOB, 2), (CAROL, 1)):
        ids[owner] = [(await queue(shared, owner, prompt=f"{owner} {i}")).id for i in range(n)]
    order = []
    for turn in range(6):
        record = await claim_next(shared, f"worker-{turn % 2}")
        assert record is not None and record.status is GenerationStatus.RUNNING and record.attempts == 1
        order.append(record.owner_id)
    assert order == [ALICE, BOB, CAROL, ALICE, BOB, ALICE]
    assert await claim_next(shared, "worker-0") is None
    # A newcomer goes before owners already served.
    await queue(shared, ALICE)
    carol_new = await queue(shared, CAROL)
    assert (await claim_next(shared, "worker-1")).id == carol_new.id


async def test_concurrent_claims_never_take_one_job_twice(postgres_database: str, tmp_path: Path) -> None:
    stores = [await Store.open(postgres_database, tmp_path / "data") for _ in range(3)]
    try:
        for index in range(12):
            await queue(stores[0], (ALICE, BOB, CAROL)[index % 3], prompt=f"job {index}")
        results = await asyncio.gather(*[claim_next(stores[n % 3], f"w{n % 3}") for n in range(15)])
        taken = [record.id for record in results if record is not None]
        assert len(taken) == 12 and len(set(taken)) == 12
    finally:
        for store in stores:
            await store.close()


async def test_an_expired_lease_requeues_with_the_attempt_counted_then_fails(shared: Store) -> None:
    job = await queue(shared)
    first = await claim_next(shared, "dead", lease_s=0)  # the worker dies: nobody renews
    assert first.id == job.id
    second = await claim_next(shared, "alive", lease_s=0)
    assert second is not None and second.id == job.id and second.attempts == 2
    # A second expiry: started twice, so it fails for good (max_attempts=2); the workers went silent, so the
    # reason does not blame the request (as recover() does for a renderer that died rendering it).
    claimed, failed = await shared.claim("third", models=["tinyshapes"], max_size=1024, loaded_model=None,
                                         lease_s=LONG)
    assert claimed == [] and [record.id for record in failed] == [job.id]
    assert failed[0].status is GenerationStatus.FAILED
    assert failed[0].failure_reason == ("the render workers stopped responding twice while rendering it; "
                                        "it was not your request — try again")
    assert "this request" not in (await shared.get(job.id)).failure_reason


async def test_only_the_lease_holder_finishes_and_only_once(shared: Store) -> None:
    job = await queue(shared)
    params = request_params()
    await claim_next(shared, "slow", lease_s=0)
    taken = await claim_next(shared, "fast")
    assert taken is not None and taken.id == job.id
    with pytest.raises(LeaseLost):
        await shared.mark_done(job.id, rendered(params), 1.0, worker_id="slow")
    done = await shared.mark_done(job.id, rendered(params), 1.0, worker_id="fast")
    assert done.status is GenerationStatus.DONE and len(done.images) == params["count"]
    with pytest.raises(LeaseLost):
        await shared.mark_done(job.id, rendered(params), 1.0, worker_id="fast")
    with pytest.raises(LeaseLost):
        await shared.mark_failed(job.id, "late", worker_id="slow")
    assert len((await shared.get(job.id)).images) == params["count"]


async def test_heartbeats_renew_held_leases_only(shared: Store) -> None:
    first, second = await queue(shared, ALICE), await queue(shared, BOB)
    await claim_next(shared, "w")
    await claim_next(shared, "w")
    assert await shared.renew_leases("w", [first.id, second.id], LONG) == {first.id, second.id}
    await shared.mark_cancelled(second.id, "cancelled in Discord")
    assert await shared.renew_leases("w", [first.id, second.id], LONG) == {first.id}
    assert await shared.renew_leases("other", [first.id], LONG) == set()


async def test_workers_take_only_what_they_can_render_and_prefer_their_loaded_model(shared: Store) -> None:
    big = await queue(shared, ALICE, width=2048, height=2048, model="big")
    small_other = await queue(shared, ALICE, model="other")
    small = await queue(shared, ALICE)
    assert (await claim_next(shared, "w", models=["tinyshapes", "other"], max_size=1024,
                            loaded_model="tinyshapes")).id == small.id
    assert (await claim_next(shared, "w", models=["tinyshapes", "other"], max_size=1024)).id == small_other.id
    assert await claim_next(shared, "w", models=["tinyshapes", "other", "big"], max_size=1024) is None
    assert (await claim_next(shared, "w", models=["big"], max_size=2048)).id == big.id


async def test_the_workers_table_and_the_shared_queue_view(shared: Store) -> None:
    await shared.register_worker("gpu-1", host="box-1", models=["tinyshapes"], max_size=1024)
    jobs = [await queue(shared, owner) for owner in (ALICE, ALICE, BOB)]
    running = await claim_next(shared, "gpu-1")
    await shared.worker_heartbeat("gpu-1", loaded_model="tinyshapes", current_jobs=[running.id])
    await shared.worker_heartbeat("gpu-1", loaded_model="tinyshapes", current_jobs=[], jobs_done=1,
                                  images_done=2, render_s=4.0)
    [worker] = await shared.workers()
    assert (worker.id, worker.host, worker.models, worker.jobs_done, worker.images_per_s) == \
        ("gpu-1", "box-1", ["tinyshapes"], 1, 0.5)
    view = await shared.shared_queue()
    assert [job.id for job in view] == [jobs[0].id, jobs[2].id, jobs[1].id]
    assert view[0].status is GenerationStatus.RUNNING and view[0].lease_owner == "gpu-1"


async def test_gateway_recovery_leaves_live_leases_alone(shared: Store) -> None:
    live, dead, waiting = await queue(shared, ALICE), await queue(shared, BOB), await queue(shared, CAROL)
    await claim_next(shared, "alive")
    await claim_next(shared, "gone", lease_s=0)
    recovery = await shared.recover_shared()
    assert [record.id for record in recovery.to_render] == [live.id, dead.id, waiting.id]
    statuses = {record.id: record.status for record in recovery.to_render}
    assert statuses == {live.id: GenerationStatus.RUNNING, dead.id: GenerationStatus.QUEUED,
                        waiting.id: GenerationStatus.QUEUED}


async def test_a_job_with_a_reference_still_to_download_is_not_claimed(shared: Store) -> None:
    # The gateway downloads --sref/--oref after the row exists; workers wait for the stored picture.
    waiting = await queue(shared, ALICE, sref_url="https://cdn.example/style.png")
    assert await claim_next(shared, "worker-0") is None
    await shared.attach_reference(waiting.id, "sref", b"\x89PNG\r\n\x1a\n" + b"style")
    claimed = await claim_next(shared, "worker-0")
    assert claimed is not None and claimed.id == waiting.id and claimed.sref_path is not None
