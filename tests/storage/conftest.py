from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def store(data_dir: Path) -> AsyncIterator[Store]:
    store = await Store.open(data_dir=data_dir)  # a real SQLite file: data/imagine.db
    try:
        yield store
    finally:
        await store.close()
