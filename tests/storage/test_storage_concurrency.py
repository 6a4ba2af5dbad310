"""Many writers at once: nothing lost, no "database is locked"."""

from __future__ import annotations

import asyncio
from pathlib import Path

from storage import GenerationStatus, Store
from storage_helpers import CHANNEL, OWNER, rendered, request_params

WRITERS = 20


async def _one_user_session(store: Store, worker: int) -> int:
    params = request_params(prompt=f"writer {worker}", count=1, seed=worker)
    record = await store.create_generation(
        owner_id=OWNER + worker % 4, guild_id=None, channel_id=CHANNEL, kind="imagine",
        parent_id=None, params=params,
    )
    await store.set_member_defaults(OWNER + worker % 4, {"count": worker})
    await store.mark_running(record.id)
    await asyncio.sleep(0)  # let the other writers interleave
    await store.mark_done(record.id, rendered(params), duration_s=0.5)
    await store.record_delivery(record.id, channel_id=CHANNEL, message_id=10_000 + worker)
    return record.id


async def test_twenty_concurrent_writers_lose_nothing(store: Store) -> None:
    ids = await asyncio.gather(*(_one_user_session(store, worker) for worker in range(WRITERS)))

    assert len(set(ids)) == WRITERS
    for worker, generation_id in enumerate(ids):
        record = await store.get(generation_id)
        assert record.status is GenerationStatus.DONE
        assert record.prompt == f"writer {worker}" and record.message_id == 10_000 + worker
        assert len(record.images) == 1
    total = sum([(await store.stats(OWNER + n)).count for n in range(4)])
    assert total == WRITERS


async def test_two_stores_on_one_file_write_at_once(database_url: str | None, data_dir: Path) -> None:
    # Two Store objects stand in for two processes: their asyncio locks don't see each other,
    # so only BEGIN IMMEDIATE + busy_timeout keep them from failing with "database is locked".
    first = await Store.open(database_url, data_dir)
    second = await Store.open(database_url, data_dir)
    try:
        ids = await asyncio.gather(
            *(_one_user_session(first if worker % 2 else second, worker) for worker in range(WRITERS))
        )
        assert len(set(ids)) == WRITERS
        assert sum([await first.count_history(OWNER + n) for n in range(4)]) == WRITERS
        assert [(await second.get(i)).status for i in ids] == [GenerationStatus.DONE] * WRITERS
    finally:
        await first.close()
        await second.close()
