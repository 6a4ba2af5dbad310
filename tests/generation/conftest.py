"""Fixtures for the generation tests: the shipped tinyshapes model, loaded once per session."""

from __future__ import annotations

import shutil

import pytest

from generation.models import TINYSHAPES_DIR, ModelSource


@pytest.fixture(scope="session")
def tinyshapes_dir(tmp_path_factory):
    """A private copy of the shipped weights.

    The model helper's training run swaps in new weights from time to time; tests that compare
    images rendered by separately loaded pipelines must all read the same version.
    """
    if not (TINYSHAPES_DIR / "model_index.json").exists():
        pytest.fail(f"The shipped model is missing at {TINYSHAPES_DIR}")
    snapshot = tmp_path_factory.mktemp("tinyshapes") / "weights"
    for attempt in range(3):  # the swap leaves the folder missing for an instant
        try:
            shutil.copytree(TINYSHAPES_DIR, snapshot, dirs_exist_ok=True)
            break
        except (FileNotFoundError, shutil.Error):
            if attempt == 2:
                raise
    return snapshot


@pytest.fixture(scope="session")
def tinyshapes(tinyshapes_dir):
    """The model source that requests naming "tinyshapes" render with in these tests."""
    return ModelSource("tinyshapes", str(tinyshapes_dir))


@pytest.fixture(scope="session")
def renderer(tinyshapes):
    """One real CPU renderer for the session (loading twice would only slow the suite).

    One torch thread: on the shared 2-core test machine two threads are several times slower.
    """
    from generation.renderer import Renderer

    renderer = Renderer(tinyshapes, device="cpu", cpu_threads=1)
    renderer.load("tinyshapes")
    return renderer
