"""The A1111 `parameters` text every PNG carries: written like A1111, read back by A1111-style tools."""

from __future__ import annotations

import io

from PIL import Image

from generation import GenerationRequest, RenderedImage
from generation.metadata import a1111_parameters, parse_a1111_parameters, rendered_png


def _parameters(png: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return parse_a1111_parameters(image.text["parameters"])


def test_a_rendered_png_carries_every_parameter_of_its_own_image() -> None:
    request = GenerationRequest(prompt="a red circle,\nsecond line", negative_prompt="blurry", width=64, height=48,
                                num_inference_steps=20, guidance_scale=7.5, seed=41, sampler="DPM++ 2M", count=2)
    png = rendered_png(request, RenderedImage(Image.new("RGB", (64, 48)), seed=42))
    with Image.open(io.BytesIO(png)) as opened:
        text = opened.text["parameters"]
    assert text.startswith("a red circle,\nsecond line\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M")
    parsed = parse_a1111_parameters(text)
    assert parsed["Prompt"] == request.prompt and parsed["Negative prompt"] == "blurry"
    assert (parsed["Steps"], parsed["Sampler"], parsed["CFG scale"]) == ("20", "DPM++ 2M", "7.5")
    assert (parsed["Seed"], parsed["Size"], parsed["Model"]) == ("42", "64x48", "tinyshapes")
    assert "Variation seed" not in parsed and "Tiling" not in parsed


def test_variation_and_lora_fields_are_written_like_a1111() -> None:
    request = GenerationRequest(prompt="a cat <lora:ink:0.8>", width=64, height=64, seed=7, model="odd, name: v2",
                                variation_seed=500, variation_strength=0.25, tiling=True)
    png = rendered_png(request, RenderedImage(Image.new("RGB", (64, 64)), seed=7, variation_seed=501,
                                              variation_strength=0.25), {"ink": "0123456789ab"})
    parsed = _parameters(png)
    assert (parsed["Seed"], parsed["Variation seed"], parsed["Variation seed strength"]) == ("7", "501", "0.25")
    assert parsed["Model"] == "odd, name: v2"  # quoted in the text, so commas don't split it
    assert parsed["Lora hashes"] == "ink: 0123456789ab" and parsed["Tiling"] == "True"


def test_a1111_text_without_negative_prompt() -> None:
    text = a1111_parameters(
        {"prompt": "cat", "negative_prompt": "", "num_inference_steps": 8, "sampler": "Euler a",
         "guidance_scale": 7.0, "model": "tinyshapes"},
        seed=3, width=32, height=32,
    )
    assert text == "cat\nSteps: 8, Sampler: Euler a, CFG scale: 7.0, Seed: 3, Size: 32x32, Model: tinyshapes"
    assert parse_a1111_parameters(text)["Negative prompt"] == ""




def test_unicode_prompts_survive_the_png_chunk() -> None:
    prompt = "château at dusk, 夜の城 🌙"
    request = GenerationRequest(prompt=prompt, negative_prompt="ugly, 低品質", width=8, height=8, seed=1)
    parsed = _parameters(rendered_png(request, RenderedImage(Image.new("RGB", (8, 8)), seed=1)))
    assert parsed["Prompt"] == prompt and parsed["Negative prompt"] == "ugly, 低品質"


def test_an_image_to_image_png_records_its_denoising_strength() -> None:
    upload = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(upload, format="PNG")
    request = GenerationRequest(prompt="make it red", width=64, height=48, seed=5, strength=0.6,
                                init_image=upload.getvalue())
    png = rendered_png(request, RenderedImage(Image.new("RGB", (64, 48)), seed=5))
    assert float(_parameters(png)["Denoising strength"]) == 0.6
    assert b"Negative prompt:" not in png


def test_an_instruction_edit_png_says_so_and_has_no_denoising_strength() -> None:
    from generation.queue.eta import steps_of

    upload = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(upload, format="PNG")
    request = GenerationRequest(prompt="make it red", width=64, height=48, seed=5, num_inference_steps=28,
                                init_image=upload.getvalue(), edit_mode="instruction")
    parameters = _parameters(rendered_png(request, RenderedImage(Image.new("RGB", (64, 48)), seed=5)))
    assert parameters["Edit"] == "instruction" and "Denoising strength" not in parameters
    # The model runs every step of an instruction edit: the ETA does not scale them by strength.
    assert steps_of(request) == 28 and steps_of(request.replace(edit_mode=None)) == 21
