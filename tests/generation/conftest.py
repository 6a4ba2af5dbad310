"""Fixtures for the generation tests: the shipped tinyshapes model, loaded once per session."""

from __future__ import annotations

import pytest

from generation.models import TINYSHAPES_DIR


@pytest.fixture(scope="session")
def tinyshapes_dir():
    if not (TINYSHAPES_DIR / "model_index.json").exists():
        pytest.fail(f"The shipped model is missing at {TINYSHAPES_DIR}")
    return TINYSHAPES_DIR


@pytest.fixture(scope="session")
def renderer(tinyshapes_dir):
    """One real CPU renderer for the session (loading twice would only slow the suite).

    One torch thread: on the shared 2-core test machine two threads are several times slower.
    """
    from generation.renderer import Renderer

    renderer = Renderer("tinyshapes", device="cpu", cpu_threads=1)
    renderer.load("tinyshapes")
    return renderer
