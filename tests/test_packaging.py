"""The wheel ships the product only (bot, generation, storage, the shipped weights and migrations):
no benchmark, training, playground, tour or screenshot module, and SimCord is no runtime requirement."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import setuptools

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TOOLING_WORDS = ("bench", "gpu_check", "train", "evaluate", "playground", "tour", "screenshot")
PRODUCT = {"bot", "generation", "storage"}


def shipped_modules() -> set[str]:
    """Every module setuptools puts in the wheel, found with the project's own package configuration."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = setuptools.find_packages(where=str(REPO), include=find["include"], exclude=find.get("exclude", ()))
    return {f"{package}.{path.stem}" for package in packages
            for path in (REPO / package.replace(".", "/")).glob("*.py")}


def shipped_data() -> set[str]:
    """Every data file the package-data globs select (relative to the repository)."""
    assert PYPROJECT["tool"]["setuptools"]["include-package-data"] is False  # only these globs
    found: set[str] = set()
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        root = REPO / package.replace(".", "/")
        for pattern in patterns:
            found |= {str(path.relative_to(REPO)) for path in root.glob(pattern) if path.is_file()}
    return found


def assert_product_only(modules: set[str], data: set[str]) -> None:
    assert {module.split(".")[0] for module in modules} == PRODUCT
    tooling = sorted(module for module in modules if any(word in module for word in TOOLING_WORDS))
    assert tooling == []
    assert not any(name.endswith(".py") for name in data if "/migrations/" not in name)  # no code as data
    assert "generation/tinyshapes/weights/unet/diffusion_pytorch_model.safetensors" in data  # the shipped model
    assert "generation/tinyshapes/weights/model_index.json" in data
    assert "storage/alembic.ini" in data and any(name.startswith("storage/migrations/versions/") for name in data)


def test_the_package_list_is_the_product_with_its_weights():
    modules = shipped_modules()
    assert {"bot.__main__", "generation.renderer", "storage.store"} <= modules
    assert_product_only(modules, shipped_data())


def test_simcord_is_an_extra_not_a_runtime_requirement():
    project = PYPROJECT["project"]
    assert not any(requirement.startswith("simcord") for requirement in project["dependencies"])
    assert any(requirement.startswith("simcord") for requirement in project["optional-dependencies"]["playground"])


@pytest.mark.system(reason="pip builds the wheel in a process")  # on a copy of the checkout (setuptools writes build/ next to the source)
def test_the_built_wheel_holds_the_product_only(tmp_path):
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(".venv", ".git", "data", "build", "__pycache__", "*.egg-info", ".pytest_cache",
                                    ".mypy_cache")
    shutil.copytree(REPO, source, ignore=ignore)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {name.removesuffix(".py").replace("/", ".") for name in names
               if name.endswith(".py") and "/migrations/" not in name}
    data = {name for name in names if not name.endswith(".py") or "/migrations/" in name}
    data = {name for name in data if ".dist-info/" not in name}
    assert_product_only({module.removesuffix(".__init__") if module.endswith(".__init__") else module
                         for module in modules}, data)
