"""PNG files: readable by A1111-style tools, named by ids, written atomically, checked on read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from storage import CorruptImage, Store
from storage_helpers import finish, queue


async def test_the_store_keeps_each_png_byte_for_byte(store: Store) -> None:
    record = await finish(store, (await queue(store, prompt="a red circle")).id)
    for image in record.images:
        png = await store.read_image(image)
        with Image.open(io.BytesIO(png)) as opened:
            assert opened.size == (image.width, image.height)
        assert image.path == f"images/0/{record.id}-{image.index}.png"


async def test_corrupted_or_missing_file_is_detected(store: Store, data_dir: Path) -> None:
    record = await finish(store, (await queue(store)).id)
    first, second = record.images
    path = data_dir / first.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptImage, match="sha256"):
        await store.read_image(first)

    (data_dir / second.path).unlink()
    with pytest.raises(CorruptImage, match="missing"):
        await store.read_image(second)


async def test_paths_come_from_ids_only_and_no_temp_files_remain(store: Store, data_dir: Path) -> None:
    record = await finish(store, (await queue(store, prompt="../../etc/passwd /tmp/x")).id)
    assert [image.path for image in record.images] == [
        f"images/{record.id // 1000}/{record.id}-0.png",
        f"images/{record.id // 1000}/{record.id}-1.png",
    ]
    on_disk = sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "images").rglob("*") if p.is_file())
    assert on_disk == [image.path for image in record.images]
