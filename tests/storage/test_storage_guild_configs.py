"""Per-server configuration rows, NSFW flags on images, and the image count a daily quota reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from storage import GuildConfigRecord, ImageInput, Store
from storage_helpers import GUILD, OWNER, png_of, queue


async def test_a_server_without_a_row_gets_empty_defaults(store: Store) -> None:
    config = await store.guild_config(GUILD)
    assert config == GuildConfigRecord(GUILD)
    assert config.updated_at is None and config.allowed_channel_ids == () and config.defaults == {}


async def test_updates_merge_field_by_field_and_survive_reopening(
    store: Store, database_url: str | None, data_dir: Path
) -> None:
    first = await store.update_guild_config(GUILD, nsfw_policy="spoiler", banned_words=["Bad Word"],
                                            allowed_channel_ids=[1, 2])
    assert first.nsfw_policy == "spoiler" and first.banned_words == ("Bad Word",)
    second = await store.update_guild_config(GUILD, defaults={"num_inference_steps": 8}, daily_quota=3,
                                             queue_cap=1, allowed_models=["tinyshapes"], mod_log_channel_id=5)
    assert second.nsfw_policy == "spoiler" and second.allowed_channel_ids == (1, 2)
    assert second.defaults == {"num_inference_steps": 8} and second.daily_quota == 3 and second.queue_cap == 1
    cleared = await store.update_guild_config(GUILD, daily_quota=None, allowed_channel_ids=[])
    assert cleared.daily_quota is None and cleared.allowed_channel_ids == () and cleared.queue_cap == 1
    assert (await store.guild_config(GUILD + 1)).updated_at is None  # other servers untouched
    await store.close()
    reopened = await Store.open(database_url, data_dir)
    try:
        assert await reopened.guild_config(GUILD) == cleared
    finally:
        await reopened.close()


async def test_unknown_fields_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown guild setting"):
        await store.update_guild_config(GUILD, colour="red")


async def test_nsfw_flags_are_kept_per_image(store: Store) -> None:
    record = await queue(store, count=2)
    images = [ImageInput(index=0, png=png_of(Image.new("RGB", (64, 48))), seed=1, nsfw="safety_checker"),
              ImageInput(index=1, png=png_of(Image.new("RGB", (64, 48))), seed=2)]
    done = await store.mark_done(record.id, images, 0.1)
    assert [image.nsfw for image in done.images] == ["safety_checker", None]
    assert [image.nsfw for image in (await store.get(record.id)).images] == ["safety_checker", None]


async def test_images_made_since_counts_rendered_and_pending_images_per_server(store: Store) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    done = await queue(store, count=2)
    await store.mark_done(done.id, [ImageInput(index=i, png=png_of(Image.new("RGB", (64, 48))), seed=i) for i in range(2)],
                          0.1)
    await queue(store, count=3)  # still queued: counts what it asked for
    failed = await queue(store, count=4)
    await store.mark_failed(failed.id, "broken")  # failed: counts nothing
    await queue(store, kind="pick", parent_id=done.id, count=1)  # a copy: counts nothing
    deleted = await queue(store, count=1)
    await store.mark_done(deleted.id, [ImageInput(index=0, png=png_of(Image.new("RGB", (64, 48))), seed=9)], 0.1)
    await store.delete_generation(deleted.id)  # deleting does not give the quota back
    await queue(store, OWNER + 1, count=4)  # someone else
    assert await store.images_made_since(OWNER, GUILD, start) == 2 + 3 + 1
    assert await store.images_made_since(OWNER, GUILD + 1, start) == 0
    assert await store.images_made_since(OWNER, None, start) == 0
    assert await store.images_made_since(OWNER, GUILD, datetime.now(UTC) + timedelta(seconds=5)) == 0
