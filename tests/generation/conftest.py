"""Fixtures for the generation tests: the shipped tinyshapes model, loaded once per session."""

from __future__ import annotations

import logging
import shutil
import sys

import pytest

from generation.models import TINYSHAPES_DIR, ModelSource


@pytest.fixture(autouse=True)
def diffusers_default_verbosity():
    """The CLI quiets diffusers for its whole process (set_verbosity_error); run in-process here, it would
    hide the warnings later tests in this worker expect (tests/bot/test_main.py)."""
    yield
    diffusers_logging = sys.modules.get("diffusers.utils.logging")
    if diffusers_logging is not None:
        diffusers_logging.set_verbosity(logging.WARNING)  # diffusers' own default


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


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Tiny random-weight SDXL, SD3 and Flux folders written offline with save_pretrained (tiny_pipelines.py)."""
    from tiny_pipelines import FAMILIES, write_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-pipelines")
    return {family: write_tiny_pipeline(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_specs(tiny_dirs, tinyshapes):
    """Model specs for the tiny families (Flux has no native size in its config: 64 here)."""
    from generation.models import ModelSpec

    specs = {name: ModelSpec(name, str(path), display_name=f"tiny {name}", size=64) for name, path in tiny_dirs.items()}
    return {"tinyshapes": tinyshapes, **specs}


@pytest.fixture(scope="session")
def family_renderer(tiny_specs):
    """One CPU renderer that knows tinyshapes and the three tiny families (one loaded at a time)."""
    from generation.renderer import Renderer

    specs = list(tiny_specs.values())
    return Renderer(specs[0], extra_models=tuple(specs[1:]), device="cpu", cpu_threads=1, preview_every=2)
