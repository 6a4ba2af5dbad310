"""PNG files: readable by A1111-style tools, named by ids, written atomically, checked on read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from storage import CorruptImage, Store, a1111_parameters, parse_a1111_parameters
from storage_helpers import finish, queue


def _parameters(png: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return parse_a1111_parameters(image.text["parameters"])


async def test_png_parameters_chunk_matches_the_record(store: Store) -> None:
    record = await finish(store, (await queue(store, prompt="a red circle,\nsecond line")).id)

    for image in record.images:
        png = await store.read_image(image)
        with Image.open(io.BytesIO(png)) as opened:
            assert opened.size == (image.width, image.height)
            text = opened.text["parameters"]
        assert text.startswith("a red circle,\nsecond line\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M")
        parsed = parse_a1111_parameters(text)
        assert parsed["Prompt"] == record.prompt
        assert parsed["Negative prompt"] == record.negative_prompt
        assert int(parsed["Steps"]) == record.num_inference_steps
        assert parsed["Sampler"] == record.sampler
        assert float(parsed["CFG scale"]) == record.guidance_scale
        assert int(parsed["Seed"]) == image.seed == record.seed + image.index
        assert parsed["Size"] == f"{record.width}x{record.height}"
        assert parsed["Model"] == record.model
        assert "Variation seed" not in parsed


async def test_variation_fields_are_written_like_a1111(store: Store) -> None:
    generation = await queue(store, kind="variation", variation_seed=500, variation_strength=0.25,
                             model="odd, name: v2")
    record = await finish(store, generation.id)
    parsed = _parameters(await store.read_image(record.images[1]))
    assert int(parsed["Variation seed"]) == record.images[1].variation_seed == 501
    assert int(parsed["Seed"]) == record.images[1].seed == record.seed  # a variation of one image
    assert float(parsed["Variation seed strength"]) == 0.25
    assert parsed["Model"] == "odd, name: v2"  # quoted in the text, so commas don't split it


def test_a1111_text_without_negative_prompt() -> None:
    text = a1111_parameters(
        {"prompt": "cat", "negative_prompt": "", "num_inference_steps": 8, "sampler": "Euler a",
         "guidance_scale": 7.0, "model": "tinyshapes"},
        seed=3, width=32, height=32,
    )
    assert text == "cat\nSteps: 8, Sampler: Euler a, CFG scale: 7.0, Seed: 3, Size: 32x32, Model: tinyshapes"
    assert parse_a1111_parameters(text)["Negative prompt"] == ""


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


async def test_unicode_prompt_survives_the_png_chunk(store: Store) -> None:
    prompt = "château at dusk, 夜の城 🌙"
    record = await finish(store, (await queue(store, prompt=prompt, negative_prompt="ugly, 低品質")).id)
    parsed = _parameters(await store.read_image(record.images[0]))
    assert parsed["Prompt"] == prompt and parsed["Negative prompt"] == "ugly, 低品質"


async def test_edit_with_an_init_image_records_denoising_strength(store: Store) -> None:
    upload = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(upload, format="PNG")
    edit = await store.create_generation(
        owner_id=1, guild_id=None, channel_id=None, kind="edit", parent_id=None,
        params={"prompt": "make it red", "width": 64, "height": 48, "num_inference_steps": 10,
                "guidance_scale": 4.5, "seed": 5, "sampler": "Euler a", "count": 1,
                "strength": 0.6, "variation_seed": None, "variation_strength": 0.0, "model": "tinyshapes"},
        init_image=upload.getvalue(),
    )
    record = await finish(store, edit.id)
    parsed = _parameters(await store.read_image(record.images[0]))
    assert float(parsed["Denoising strength"]) == 0.6
    assert "Negative prompt:" not in (await store.read_image(record.images[0])).decode("latin-1")
