"""Every first-class family in the real bot: tiny random-weight SDXL, SD3 and Flux folders (written offline
by tests/generation/tiny_pipelines.py), listed in a MODELS_FILE beside the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bot_helpers import (BOT_BATCH_IMAGES, attachment_bytes, image_of, load_generation_helper, result_footer,
                         result_title)

from bot.settings import Settings

FAMILIES = ("sdxl", "sd3", "flux")


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny = load_generation_helper("tiny_pipelines")
    root = tmp_path_factory.mktemp("families")
    lines = ["[models.tinyshapes]", ""]
    for family in FAMILIES:
        folder = tiny.write_tiny_pipeline(family, root / family)
        lines += [f"[models.{family}]", f'display_name = "tiny {family}"', f'path = "{folder}"', "size = 64",
                  "steps = 4", ""]
    path = root / "models.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def lora_dir(models_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    load_generation_helper("test_loras_and_weights").make_lora(models_file.parent / "sdxl", folder, "tiny-style", "unet")
    return folder


@pytest.fixture
def bot_settings(tmp_path: Path, models_file: Path, lora_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", device="cpu", dtype="float32", cpu_threads=1,
                    models_file=models_file, lora_dir=lora_dir, log_level="DEBUG", batch_images=BOT_BATCH_IMAGES)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.simcord(settle_timeout=120.0)
async def test_each_family_renders_and_every_button_works(world, family: str) -> None:
    alice = world.alice
    grid = (await alice.slash(world.channel, "imagine", prompt="a red circle", model=family, count=2, seed=3)).response
    parent = await world.store.get_by_message(grid.id)
    assert parent.model == family and len(parent.images) == 2 and grid.attachments
    assert f"tiny {family}" in result_footer(grid) or family in result_footer(grid)

    again = (await alice.slash(world.channel, "imagine", prompt="a red circle", model=family, count=2, seed=3)).response
    assert await attachment_bytes(again) == await attachment_bytes(grid)  # same seed, same pixels

    for label in ("Reroll", "V1"):
        child = (await alice.click(grid, label=label)).response
        assert child.attachments, label
        assert (await world.store.get_by_message(child.id)).model == family
    picked = (await alice.click(grid, label="U1")).response
    bigger = (await alice.click(picked, label="Upscale 2×")).response
    assert image_of(await attachment_bytes(bigger)).size == (128, 128)

    # Masked edits through the family's inpainting pipeline (random weights: the geometry is what counts).
    source = np.asarray(image_of(await attachment_bytes(picked)).convert("RGB")).astype(int)
    zoomed = (await alice.click(picked, label="Zoom Out 2×")).response
    pixels = np.asarray(image_of(await attachment_bytes(zoomed)).convert("RGB")).astype(int)
    # The source is kept but for its 2-px border band, repainted with the new area (generation/outpaint.py).
    assert pixels.shape == (128, 128, 3) and np.abs(pixels[34:94, 34:94] - source[2:-2, 2:-2]).max() <= 2
    picked_id = (await world.store.get_by_message(picked.id)).id
    panned = (await alice.click(picked, custom_id=f"gen:pan:{picked_id}:0:right")).response
    pixels = np.asarray(image_of(await attachment_bytes(panned)).convert("RGB")).astype(int)
    assert pixels.shape == (64, 96, 3) and np.abs(pixels[:, :62] - source[:, :62]).max() <= 2

    shown = await alice.click(grid, label="Edit")
    edited = (await alice.submit_modal(shown, {"prompt": "a blue square", "negative_prompt": "", "keep_seed": True}))
    assert edited.response.attachments and result_title(edited.response) == "a blue square"
    info = (await alice.click(grid, label="Info")).response
    assert info.ephemeral and f"**Model:** {family}" in info.embeds[0].description


async def test_a_sampler_or_lora_the_family_cannot_use_is_refused_privately(world) -> None:
    refused = await world.alice.slash(world.channel, "imagine", prompt="a red circle", model="flux", sampler="DDIM")
    assert refused.response.ephemeral and "Euler" in refused.response.content
    no_lora = await world.alice.slash(world.channel, "imagine", prompt="a red circle <lora:nosuch:0.8>", model="sdxl")
    assert no_lora.response.ephemeral and "nosuch" in no_lora.response.content
    assert await world.store.history(world.alice.id) == []


async def test_the_lora_option_applies_a_lora_and_records_it(world) -> None:
    plain = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", model="sdxl", seed=5)).response
    styled = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", model="sdxl", seed=5,
                                      lora="tiny-style")).response
    record = await world.store.get_by_message(styled.id)
    assert record.prompt == "a red circle <lora:tiny-style:0.8>"
    png = await attachment_bytes(styled)
    assert png != await attachment_bytes(plain)
    assert "Lora hashes: \"tiny-style: " in image_of(png).info["parameters"]
