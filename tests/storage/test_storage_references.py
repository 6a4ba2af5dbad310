"""Style/object references (migration 0010): the URL, weight and stored picture with its sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from storage import GenerationKind, Store, files
from storage_helpers import OWNER

PICTURE = b"\x89PNG\r\n\x1a\n" + b"reference bytes"


async def test_a_reference_is_stored_with_its_url_weight_and_sha256(store: Store, data_dir: Path) -> None:
    record = await store.create_generation(
        owner_id=OWNER, guild_id=None, channel_id=None, kind=GenerationKind.IMAGINE, parent_id=None,
        params={"prompt": "a cat", "sref_url": "https://example.com/style.png", "sref_weight": 250,
                "sref_image": PICTURE, "oref_image": None},
    )
    assert record.request_params == {"prompt": "a cat", "sref_url": "https://example.com/style.png",
                                      "sref_weight": 250}
    assert record.sref_sha256 == hashlib.sha256(PICTURE).hexdigest() and record.oref_sha256 is None
    stored = data_dir / files.reference_path(record.id, "sref", PICTURE)
    assert stored.read_bytes() == PICTURE
    await store.delete_generation(record.id)
    assert not stored.exists()


async def test_a_reference_downloaded_after_the_row_exists_is_attached_and_read_back(store: Store) -> None:
    record = await store.create_generation(
        owner_id=OWNER, guild_id=None, channel_id=None, kind=GenerationKind.IMAGINE, parent_id=None,
        params={"prompt": "a cat", "oref_url": "https://example.com/cat.png", "oref_weight": 300},
    )
    assert record.oref_path is None and await store.read_references(record.id) == {}
    attached = await store.attach_reference(record.id, "oref", PICTURE)
    assert attached.oref_sha256 == hashlib.sha256(PICTURE).hexdigest() and attached.oref_path is not None
    assert attached.oref_url == "https://example.com/cat.png" and attached.oref_weight == 300
    assert await store.read_references(record.id) == {"oref_image": PICTURE}
