"""The generations table is the queue: a restart picks up exactly where the process died."""

from __future__ import annotations

from pathlib import Path

from storage import GenerationStatus, Store
from storage_helpers import CHANNEL, finish, queue


async def test_restart_resubmits_queued_in_order_and_retries_running_once(database_url: str | None, data_dir: Path) -> None:
    store = await Store.open(database_url, data_dir)
    first = await queue(store, prompt="first")
    interrupted = await queue(store, prompt="was rendering")
    second = await queue(store, prompt="second")
    third = await queue(store, prompt="third")
    undelivered = await finish(store, (await queue(store, prompt="rendered, not posted")).id)
    posted = await finish(store, (await queue(store, prompt="posted")).id)
    await store.record_delivery(posted.id, channel_id=CHANNEL, message_id=1)
    await store.mark_cancelled((await queue(store, prompt="cancelled")).id)
    await store.mark_running(interrupted.id)
    await store.close()  # the process dies here

    store = await Store.open(database_url, data_dir)
    recovery = await store.recover()
    assert [record.prompt for record in recovery.to_render] == ["first", "was rendering", "second", "third"]
    assert all(record.status is GenerationStatus.QUEUED for record in recovery.to_render)
    retried = recovery.to_render[1]
    assert retried.id == interrupted.id and retried.attempts == 1 and retried.started_at is None
    assert all(record.attempts == 0 for record in recovery.to_render if record.id != interrupted.id)
    assert [record.id for record in recovery.to_deliver] == [undelivered.id]
    assert recovery.to_deliver[0].images == undelivered.images
    assert recovery.failed == []

    # Second crash while re-rendering the same job: it is not retried a second time.
    await store.mark_running(interrupted.id)
    await store.close()
    store = await Store.open(database_url, data_dir)
    recovery = await store.recover()
    assert [record.id for record in recovery.to_render] == [first.id, second.id, third.id]
    gave_up = await store.get(interrupted.id)
    assert gave_up.status is GenerationStatus.FAILED
    assert gave_up.failure_reason == "this request stopped the renderer twice; try a smaller size or fewer images"
    assert [record.id for record in recovery.failed] == [interrupted.id]
    await store.close()


async def test_rendered_but_unposted_result_is_delivered_exactly_once(database_url: str | None, data_dir: Path) -> None:
    store = await Store.open(database_url, data_dir)
    done = await finish(store, (await queue(store)).id)
    await store.close()  # died between "rendered" and "posted"

    store = await Store.open(database_url, data_dir)
    recovery = await store.recover()
    assert [record.id for record in recovery.to_deliver] == [done.id]
    assert recovery.to_render == []
    await store.record_delivery(done.id, channel_id=CHANNEL, message_id=4242)
    await store.close()

    store = await Store.open(database_url, data_dir)
    recovery = await store.recover()
    assert recovery.to_deliver == [] and recovery.to_render == []
    assert (await store.get_by_message(4242)).id == done.id
    await store.close()


async def test_permanent_delivery_failure_is_not_retried(store: Store) -> None:
    done = await finish(store, (await queue(store)).id)
    failed = await store.record_delivery_failure(done.id, "Missing Access: channel deleted")
    assert failed.delivery_failure == "Missing Access: channel deleted"
    assert (await store.recover()).to_deliver == []


async def test_deleted_work_is_neither_rendered_nor_delivered(store: Store) -> None:
    queued = await queue(store)
    done = await finish(store, (await queue(store)).id)
    await store.delete_generation(queued.id)
    await store.delete_generation(done.id)
    recovery = await store.recover()
    assert recovery.to_render == [] and recovery.to_deliver == []
