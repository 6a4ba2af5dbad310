"""Instruction-edit models and references in the real bot (issue 23): a tiny random-weight FLUX.2 [klein]
(tests/generation/tiny_edit_pipelines.py) and the shipped SD 1.x model with a tiny IP-Adapter, listed in a
MODELS_FILE; `plain` is the shipped model again without an adapter."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from bot_helpers import BOT_BATCH_IMAGES, attachment_bytes, image_of, load_generation_helper, png_of
from PIL import Image

from bot.settings import Settings
from generation.models import TINYSHAPES_DIR
from generation.queue.records import request_for_image
from storage import GenerationKind

ADAPTER = "ip-adapter_tiny.safetensors"


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the models file, IP_ADAPTER_DIR)."""
    tiny = load_generation_helper("tiny_edit_pipelines")
    root = tmp_path_factory.mktemp("edit-models")
    klein = tiny.write_tiny_edit_pipeline("klein", root / "klein")
    adapters = root / "ip-adapters"
    adapters.mkdir()
    tiny.write_tiny_ip_adapter(adapters, TINYSHAPES_DIR, name=ADAPTER)
    entries = {"tinyshapes": ["[models.tinyshapes]", f'ip_adapter = "{ADAPTER}"', ""],
               "klein": ["[models.klein]", 'display_name = "tiny klein"', f'path = "{klein}"', "size = 64", ""],
               "plain": ["[models.plain]", f'path = "{TINYSHAPES_DIR}"', ""]}
    (root / "models.toml").write_text("\n".join(line for name in ("tinyshapes", "klein", "plain") for line in entries[name]))
    # The same models with klein first: the default model, for commands without a model option (/blend).
    (root / "klein-first.toml").write_text("\n".join(line for name in ("klein", "tinyshapes") for line in entries[name]))
    return root, adapters


@pytest.fixture
def bot_settings(tmp_path: Path, model_folders: tuple[Path, Path], request: pytest.FixtureRequest) -> Settings:
    root, adapters = model_folders
    marker = request.node.get_closest_marker("bot")  # bot(models="klein-first"): that models file
    models_file = root / f"{marker.kwargs['models'] if marker else 'models'}.toml"
    return Settings(_env_file=None, data_dir=tmp_path / "data", device="cpu", dtype="float32", cpu_threads=1,
                    default_steps=4, models_file=models_file, ip_adapter_dir=adapters, log_level="DEBUG",
                    batch_images=BOT_BATCH_IMAGES)


def stripes_png() -> bytes:
    """A reference unlike anything tinyshapes draws: white stripes on black."""
    values = np.zeros((64, 64, 3), np.uint8)
    values[::8] = 255
    return png_of(Image.fromarray(values))


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(image_of(data).convert("RGB")).astype(int)


def parameters_text(data: bytes) -> str:
    return str(image_of(data).info["parameters"])


@pytest.mark.simcord(settle_timeout=120.0)
async def test_edit_by_words_on_an_edit_model_is_an_instruction_edit(world) -> None:
    alice = world.alice
    made = (await alice.slash(world.channel, "imagine", prompt="a red circle", model="klein", seed=3)).response
    parent = await world.store.get_by_message(made.id)
    assert parent.model == "klein" and parent.edit_mode is None
    before = await attachment_bytes(made)

    shown = await alice.click(made, label="Edit")
    edited = (await alice.submit_modal(shown, {"prompt": "make it blue", "negative_prompt": ""})).response
    child = await world.store.get_by_message(edited.id)
    assert child.kind is GenerationKind.EDIT and child.parent_id == parent.id
    assert child.edit_mode == "instruction" and child.has_init_image and child.prompt == "make it blue"
    after = await attachment_bytes(edited)
    assert image_of(after).size == image_of(before).size == (child.width, child.height)
    assert np.abs(pixels(after) - pixels(before)).mean() > 1  # the picture changed
    # The init image is the parent's picture, exactly.
    assert await world.store.read_init_image(child.id) == await world.store.read_image(parent.images[0])
    text = parameters_text(after)
    assert "Edit: instruction" in text and "Denoising strength" not in text

    info = (await alice.click(edited, label="Info")).response
    description = info.embeds[0].description
    assert info.ephemeral and "instruction edit" in description and "strength" not in description
    line = " ".join(info.embeds[0].fields[0].value.strip("`").split())
    assert line.startswith("make it blue") and line.endswith("init_image: (the original picture)")
    assert "strength" not in line and "--model klein" in line
    history = (await alice.slash(world.channel, "history")).response
    assert "instruction edit" in history.embeds[0].description.split("\n")[0]

    # The same edit with the same seed is the same picture.
    shown = await alice.click(made, label="Edit")
    again = (await alice.submit_modal(shown, {"prompt": f"make it blue --seed {child.seed}"})).response
    assert await attachment_bytes(again) == after


@pytest.mark.simcord(settle_timeout=120.0)
async def test_imagine_with_an_init_image_on_an_edit_model_keeps_the_picture_size(world) -> None:
    start = png_of(Image.new("RGB", (96, 64), (200, 30, 30)))
    made = (await world.alice.slash(world.channel, "imagine", prompt="make it green", model="klein", seed=4,
                                    init_image=("start.png", start))).response
    record = await world.store.get_by_message(made.id)
    assert record.edit_mode == "instruction" and (record.width, record.height) == (96, 64)
    assert image_of(await attachment_bytes(made)).size == (96, 64)


@pytest.mark.bot(models="klein-first")
@pytest.mark.simcord(settle_timeout=120.0)
async def test_blend_with_words_on_a_multi_picture_model_edits_the_first_with_the_others_as_references(world) -> None:
    first = png_of(Image.new("RGB", (80, 64), (200, 30, 30)))
    second, third = stripes_png(), png_of(Image.new("RGB", (64, 64), (20, 200, 20)))
    made = (await world.alice.slash(world.channel, "blend", image1=("a.png", first), image2=("b.png", second),
                                    image3=("c.png", third), prompt="put the stripes on it")).response
    record = await world.store.get_by_message(made.id)
    assert record.kind is GenerationKind.BLEND and record.edit_mode == "instruction" and record.model == "klein"
    assert await world.store.read_init_image(record.id) == first and (record.width, record.height) == (80, 64)
    assert record.sref_sha256 == hashlib.sha256(second).hexdigest()
    assert record.oref_sha256 == hashlib.sha256(third).hexdigest()
    assert len(record.images) == 4  # a grid of edits, as /blend makes, each at the first picture's size
    assert {image_of(await world.store.read_image(image)).size for image in record.images} == {(80, 64)}


@pytest.mark.simcord(settle_timeout=120.0)
async def test_a_style_reference_on_the_shipped_model_is_recorded_and_kept_by_reroll(world) -> None:
    alice, reference = world.alice, stripes_png()
    plain = (await alice.slash(world.channel, "imagine", prompt="a red circle", seed=5)).response
    styled = (await alice.slash(world.channel, "imagine", prompt="a red circle", seed=5, sw=400,
                                sref=("stripes.png", reference))).response
    record = await world.store.get_by_message(styled.id)
    digest = hashlib.sha256(reference).hexdigest()
    assert record.sref_sha256 == digest and record.sref_path is not None and record.sref_weight == 400
    assert record.sref_url is not None and record.sref_url.endswith("/stripes.png")
    png = await attachment_bytes(styled)
    assert np.abs(pixels(png) - pixels(await attachment_bytes(plain))).mean() > 1  # the reference counts
    assert f"Style reference: {digest}" in parameters_text(png) and "Style weight: 400" in parameters_text(png)
    info = (await alice.click(styled, label="Info")).response
    assert "Style reference" in info.embeds[0].description and "Style weight:** 400" in info.embeds[0].description

    rerolled = (await alice.click(styled, label="Reroll")).response
    child = await world.store.get_by_message(rerolled.id)
    assert child.kind is GenerationKind.REROLL and child.sref_sha256 == digest and child.sref_weight == 400

    # A re-render from the record (its stored reference read back) is the stored PNG, bit-exact.
    service = world.bot.queue.scheduler  # type: ignore[attr-defined]  # the in-process queue's
    image = record.images[0]
    request = service.prepare(request_for_image(record, image, None, await world.store.read_references(record.id)))
    assert request.sref_image == reference
    again = (await service.submit(request, owner=str(record.owner_id)).result()).images[0]
    buffer = io.BytesIO()
    again.image.save(buffer, format="PNG")
    assert np.array_equal(pixels(buffer.getvalue()), pixels(await world.store.read_image(image)))


@pytest.mark.simcord(settle_timeout=120.0)
async def test_an_object_reference_on_an_edit_model_is_a_picture_it_takes(world) -> None:
    reference = stripes_png()
    made = (await world.alice.slash(world.channel, "imagine", prompt="a red circle --ow 300", model="klein", seed=6,
                                    oref=("thing.png", reference))).response
    record = await world.store.get_by_message(made.id)
    assert record.oref_sha256 == hashlib.sha256(reference).hexdigest() and record.oref_weight == 300
    info = (await world.alice.click(made, label="Info")).response
    assert "Object reference" in info.embeds[0].description


async def test_a_reference_a_model_cannot_take_is_refused_privately_and_records_nothing(world) -> None:
    refused = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", model="plain",
                                       sref=("stripes.png", stripes_png()))).response
    assert refused.ephemeral and "IP-Adapter" in refused.content and "--sref" in refused.content
    no_weight = (await world.alice.slash(world.channel, "imagine", prompt="a red circle --sw 100")).response
    assert no_weight.ephemeral and "--sref" in no_weight.content
    assert await world.store.history(world.alice.id) == []


async def test_a_reference_that_cannot_be_downloaded_fails_the_job_privately(world) -> None:
    result = await world.alice.slash(world.channel, "imagine",
                                     prompt="a red circle --sref https://cdn.simcord.invalid/attachments/1/2/gone.png")
    await world.env.settle()
    [record] = await world.store.history(world.alice.id)
    assert record.status.value == "failed" and "style reference" in (record.failure_reason or "")
    private = [message for message in (result.response, *result.followups) if message is not None and message.ephemeral]
    assert private and "could not be downloaded" in private[-1].content


@pytest.mark.simcord(settle_timeout=120.0)
async def test_a_reply_with_words_to_an_edit_model_result_is_an_instruction_edit_of_its_picture(world) -> None:
    """Conversation turns reach bot.instruction_edits like the Edit form: the parent's picture, the words as
    the instruction, its size and seed kept."""
    made = (await world.alice.slash(world.channel, "imagine", prompt="a red circle", model="klein", seed=5)).response
    parent = await world.store.get_by_message(made.id)
    sent = await world.alice.send(world.channel, f"{world.env.bot.user.mention} make it blue", reply_to=made)
    await world.env.settle()
    [answer] = [message for message in world.channel.history()
                if message.author.id == world.env.bot.user.id and message.reference is not None
                and message.reference.message_id == sent.id]
    child = await world.store.get_by_message(answer.id)
    assert child.kind is GenerationKind.EDIT and child.parent_id == parent.id
    assert child.edit_mode == "instruction" and child.prompt == "make it blue"
    assert child.seed == parent.images[0].seed and (child.width, child.height) == (parent.width, parent.height)
    assert await world.store.read_init_image(child.id) == await world.store.read_image(parent.images[0])
    assert "Edit: instruction" in parameters_text(await attachment_bytes(answer))
