"""A generation's life as the bot drives it: queue, render, post, look up, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pathlib import Path

import pytest
from sqlalchemy import text

from storage import (
    GenerationKind,
    GenerationNotFound,
    GenerationStatus,
    InvalidTransition,
    Store,
)
from storage_helpers import CHANNEL, GUILD, OWNER, finish, queue, rendered, request_params
from storage.engine import head_revision

HEAD = head_revision()


async def test_full_lifecycle(store: Store, data_dir: Path) -> None:
    if store.engine.dialect.name == "sqlite":
        assert (data_dir / "imagine.db").is_file()  # a real file, not :memory:

    queued = await queue(store)
    assert queued.status is GenerationStatus.QUEUED
    assert queued.kind is GenerationKind.IMAGINE
    assert (queued.owner_id, queued.guild_id, queued.channel_id) == (OWNER, GUILD, CHANNEL)
    assert queued.request_params == {k: v for k, v in request_params().items() if v is not None}
    assert queued.created_at.tzinfo is not None and queued.started_at is None

    running = await store.mark_running(queued.id)
    assert running.status is GenerationStatus.RUNNING and running.started_at is not None

    done = await store.mark_done(queued.id, rendered(request_params()), duration_s=2.5)
    assert done.status is GenerationStatus.DONE
    assert done.duration_s == 2.5 and done.finished_at >= done.started_at
    assert [(image.index, image.seed, image.width, image.height) for image in done.images] == [
        (0, 1234, 64, 48),
        (1, 1235, 64, 48),
    ]
    for image in done.images:
        assert (data_dir / image.path).is_file()
        assert (await store.read_image(image)).startswith(b"\x89PNG")

    delivered = await store.record_delivery(queued.id, channel_id=CHANNEL, message_id=777)
    assert delivered.message_id == 777 and delivered.message_channel_id == CHANNEL
    assert await store.get_by_message(777) == delivered
    assert await store.get(queued.id) == delivered
    assert [record.id for record in await store.history(OWNER)] == [queued.id]

    stats = await store.stats(OWNER)
    assert (stats.count, stats.done, stats.images, stats.total_render_s) == (1, 1, 2, 2.5)

    await store.delete_generation(queued.id)
    assert not any((data_dir / image.path).exists() for image in done.images)
    assert await store.get(queued.id) is None
    assert await store.get_by_message(777) is None
    assert await store.history(OWNER) == []
    assert (await store.stats(OWNER)).count == 0


async def test_finished_generation_is_never_rendered_again(store: Store, data_dir: Path) -> None:
    record = await finish(store, (await queue(store)).id)
    before = {image.path: (data_dir / image.path).read_bytes() for image in record.images}

    with pytest.raises(InvalidTransition) as refused:
        await store.mark_running(record.id)
    assert (refused.value.current, refused.value.wanted) == (GenerationStatus.DONE, GenerationStatus.RUNNING)
    with pytest.raises(InvalidTransition):
        await store.mark_done(record.id, rendered(request_params(seed=99)), duration_s=1.0)
    with pytest.raises(InvalidTransition):
        await store.mark_failed(record.id, "too late")

    assert await store.get(record.id) == record
    assert {path: (data_dir / path).read_bytes() for path in before} == before


async def test_failed_and_cancelled_are_final(store: Store) -> None:
    failing = await queue(store)
    await store.mark_running(failing.id)
    failed = await store.mark_failed(failing.id, "CUDA out of memory")
    assert failed.status is GenerationStatus.FAILED and failed.failure_reason == "CUDA out of memory"

    cancelled = await store.mark_cancelled((await queue(store)).id)
    assert cancelled.status is GenerationStatus.CANCELLED and cancelled.finished_at is not None

    # The cancel button and the job's own JobCancelled may both report it: the second is a no-op.
    assert await store.mark_cancelled(cancelled.id) == cancelled
    deleted = await queue(store)
    await store.delete_generation(deleted.id)
    assert (await store.mark_cancelled(deleted.id)).failure_reason == "deleted"

    for record in (failed, cancelled):
        with pytest.raises(InvalidTransition):
            await store.mark_running(record.id)
        with pytest.raises(InvalidTransition):
            await store.mark_done(record.id, rendered(request_params()), duration_s=1.0)


async def test_delivery_is_only_recorded_for_a_finished_generation(store: Store) -> None:
    record = await queue(store)
    with pytest.raises(InvalidTransition):
        await store.record_delivery(record.id, channel_id=CHANNEL, message_id=5)
    assert (await store.get(record.id)).message_id is None


async def test_unknown_ids_and_params_are_refused(store: Store) -> None:
    with pytest.raises(GenerationNotFound):
        await store.mark_running(424242)
    assert await store.get(424242) is None
    with pytest.raises(ValueError, match="promt"):
        await store.create_generation(
            owner_id=OWNER, guild_id=None, channel_id=None, kind="imagine", parent_id=None,
            params={"promt": "typo"},
        )
    with pytest.raises(ValueError):
        await queue(store, kind="paint")


async def test_minimal_params_round_trip_without_nones(store: Store) -> None:
    record = await store.create_generation(
        owner_id=OWNER, guild_id=None, channel_id=None, kind=GenerationKind.IMAGINE,
        parent_id=None, params={"prompt": "dm prompt", "seed": None},
    )
    # Unset fields stay out, so GenerationRequest(**params) falls back to its own defaults.
    assert record.request_params == {"prompt": "dm prompt"}
    assert record.guild_id is None


async def test_init_image_is_stored_as_a_file_and_read_back(store: Store, data_dir: Path) -> None:
    upload = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4  # JPEG magic + payload
    record = await store.create_generation(
        owner_id=OWNER, guild_id=GUILD, channel_id=CHANNEL, kind="edit", parent_id=None,
        params=request_params(count=1), init_image=upload,
    )
    assert record.has_init_image
    assert await store.read_init_image(record.id) == upload
    stored = list((data_dir / "images").rglob("*-init.jpg"))
    assert [path.name for path in stored] == [f"{record.id}-init.jpg"]

    await store.delete_generation(record.id)
    assert not stored[0].exists()
    assert await store.read_init_image((await queue(store)).id) is None


async def test_member_defaults_merge_and_remove(store: Store) -> None:
    assert await store.member_defaults(OWNER) == {}
    assert await store.set_member_defaults(OWNER, {"width": 96, "sampler": "Euler a"}) == {"width": 96, "sampler": "Euler a"}
    assert await store.set_member_defaults(OWNER, {"width": None, "count": 4}) == {"sampler": "Euler a", "count": 4}
    assert await store.member_defaults(OWNER) == {"sampler": "Euler a", "count": 4}
    assert await store.member_defaults(OWNER + 1) == {}


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(store: Store) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    async with store.engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() >= 5000
        version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert version == HEAD


async def test_pending_init_image_is_attached_later(store: Store) -> None:
    record = await store.create_generation(
        owner_id=OWNER, guild_id=None, channel_id=None, kind="imagine", parent_id=None,
        params={"prompt": "a red circle"}, init_image_url="https://cdn.example/init.png")
    assert record.has_init_image and record.init_image_url == "https://cdn.example/init.png"
    assert await store.read_init_image(record.id) is None
    attached = await store.attach_init_image(record.id, b"\x89PNG fake bytes")
    assert attached.init_image_url is None and attached.has_init_image
    assert await store.read_init_image(record.id) == b"\x89PNG fake bytes"


async def test_interaction_token_is_kept_until_the_result_is_posted_and_never_shown(store: Store) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=15)
    record = await store.create_generation(
        owner_id=OWNER, guild_id=None, channel_id=None, kind="imagine", parent_id=None,
        params={"prompt": "a red circle"}, interaction_token="secret-token", interaction_expires_at=expires)
    assert "secret-token" not in repr(record)
    assert (await store.get(record.id)).interaction_token == "secret-token"
    done = await finish(store, record.id)
    assert done.attempts == 1
    assert done.interaction_token == "secret-token"  # still needed to post the result
    delivered = await store.record_delivery(record.id, channel_id=1, message_id=2)
    assert delivered.interaction_token is None
