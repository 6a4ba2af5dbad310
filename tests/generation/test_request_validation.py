"""Every validation rule rejects bad input with a message saying what is wrong and what is allowed."""

from __future__ import annotations

import io

import PIL.Image
import pytest
from gen_helpers import FakeRenderer

from generation import MAX_SEED, SAMPLERS, GenerationRequest, GenerationService, Limits, RequestError
from generation.validation import validate_request

LIMITS = Limits(min_size=32, max_size=1024, max_pixels=512 * 512, max_steps=50, max_count=4)


def rejected(**fields) -> str:
    request = GenerationRequest(**{"prompt": "a red circle", "seed": 1, **fields})
    with pytest.raises(RequestError) as error:
        validate_request(request, LIMITS)
    return str(error.value)


def png_bytes(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_valid_request_passes():
    validate_request(GenerationRequest("a red circle", width=64, height=128, seed=5), LIMITS)


def test_empty_prompt():
    assert rejected(prompt="   ") == "prompt must not be empty; describe the image you want."


@pytest.mark.parametrize(
    "field, value",
    [("width", 100), ("height", 65), ("width", 24), ("height", 1032), ("width", "64")],
)
def test_size_must_be_a_multiple_of_8_within_bounds(field, value):
    assert rejected(**{field: value}) == f"{field} must be a multiple of 8 from 32 to 1024, got {value!r}."


def test_pixel_cap():
    assert rejected(width=1024, height=512) == (
        "1024x512 is 524288 pixels; the limit is 262144 pixels (for example 512x512)."
    )


@pytest.mark.parametrize("steps", [0, 51, 2.5])
def test_steps_range(steps):
    assert rejected(num_inference_steps=steps) == (
        f"steps must be a whole number from 1 to 50, got {steps!r}."
    )


@pytest.mark.parametrize("cfg", [-0.5, 30.5, float("nan")])
def test_guidance_range(cfg):
    assert rejected(guidance_scale=cfg) == f"guidance must be a number from 0 to 30, got {cfg!r}."


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_seed_range(seed):
    assert rejected(seed=seed) == f"seed must be a whole number from 0 to 4294967295, got {seed}."


@pytest.mark.parametrize("count", [0, 5])
def test_count_range(count):
    assert rejected(count=count) == f"count must be a whole number from 1 to 4 images per request, got {count}."


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_range(strength):
    assert rejected(strength=strength) == f"strength must be a number from 0 to 1, got {strength}."


def test_variation_strength_range():
    assert rejected(variation_strength=1.2) == "variation strength must be a number from 0 to 1, got 1.2."


def test_variation_seed_range():
    assert rejected(variation_seed=MAX_SEED + 1) == (
        "variation seed must be a whole number from 0 to 4294967295, got 4294967296."
    )


def test_unknown_sampler_lists_the_valid_ones():
    assert rejected(sampler="Euler b") == f"Unknown sampler 'Euler b'. Available samplers: {', '.join(SAMPLERS)}."


def test_unknown_model_lists_the_valid_ones():
    message = rejected(model="sdxl")
    assert message == "Unknown model 'sdxl'. Available models: tinyshapes."


def test_negative_prompt_must_be_text():
    assert rejected(negative_prompt=["blue"]) == "The negative prompt must be text."


def test_init_image_must_be_image_data():
    assert rejected(init_image="cat.png") == "The init image must be PNG or JPEG bytes or a PIL image."


def test_unreadable_init_image():
    assert rejected(init_image=b"not an image") == "The init image is not a readable image; use a PNG or JPEG file."


def test_variations_need_text_to_image():
    assert rejected(init_image=png_bytes(), variation_strength=0.15) == (
        "Variations only work for text-to-image; remove the init image or set the variation strength to 0."
    )


def test_a_pil_init_image_is_stored_as_png_bytes():
    request = GenerationRequest("a red circle", init_image=PIL.Image.new("RGB", (8, 8), "blue"))
    assert request.init_image.startswith(b"\x89PNG")
    assert PIL.Image.open(io.BytesIO(request.init_image)).getpixel((0, 0)) == (0, 0, 255)


# -- checks that need the model: prompt length (its tokenizer) and the native size --


@pytest.fixture(scope="module")
def service(tinyshapes):
    from generation.renderer import Renderer

    # prepare() only reads the tokenizer and configs; no pipeline is loaded here.
    return GenerationService(Renderer(tinyshapes, device="cpu"), LIMITS)


def test_a_prompt_longer_than_the_text_encoder_window_is_reported(service):
    window = service.renderer.tokenizer("tinyshapes").model_max_length
    prompt = " ".join(["red circle"] * window)
    with pytest.raises(RequestError) as error:
        service.prepare(GenerationRequest(prompt))
    count = 2 * window + 2  # "red" and "circle" are one token each, plus the start and end tokens
    assert str(error.value) == (
        f"prompt is too long: {count} tokens, but the model reads at most {window} "
        f"(including its start and end tokens), so the last {count - window} would be dropped. Shorten it."
    )


def test_a_long_negative_prompt_is_reported_too(service):
    window = service.renderer.tokenizer("tinyshapes").model_max_length
    with pytest.raises(RequestError, match="^negative prompt is too long"):
        service.prepare(GenerationRequest("a red circle", negative_prompt=" ".join(["blue"] * window)))


def test_prepare_chooses_and_records_seed_and_native_size(service):
    prepared = service.prepare(GenerationRequest("a red circle", variation_strength=0.15))
    assert 0 <= prepared.seed <= MAX_SEED
    assert 0 <= prepared.variation_seed <= MAX_SEED
    assert (prepared.width, prepared.height) == (64, 64)
    assert service.prepare(prepared) == prepared  # nothing left to choose: prepare is stable


def test_prepare_keeps_typed_values():
    service = GenerationService(FakeRenderer(), LIMITS)
    prepared = service.prepare(GenerationRequest("a red circle", seed=0, width=96))
    assert (prepared.seed, prepared.width, prepared.height) == (0, 96, 64)


def test_image_seeds_wrap_around_at_the_top_of_the_range():
    request = GenerationRequest("a red circle", seed=MAX_SEED, count=3)
    assert request.image_seeds() == [MAX_SEED, 0, 1]


def test_variation_images_keep_the_parent_seed_and_step_the_variation_seed():
    request = GenerationRequest("a red circle", seed=7, count=3, variation_seed=MAX_SEED, variation_strength=0.15)
    assert request.image_seeds() == [7, 7, 7]
    assert request.image_variation_seeds() == [MAX_SEED, 0, 1]


def test_a_configured_model_whose_files_are_missing_is_reported(tmp_path, tinyshapes):
    from generation.renderer import Renderer

    missing = str(tmp_path / "no-such-model")
    service = GenerationService(Renderer(tinyshapes, device="cpu"), Limits(models=("tinyshapes", missing)))
    with pytest.raises(RequestError) as error:
        service.prepare(GenerationRequest("a red circle", model=missing))
    assert str(error.value) == f"Model {missing!r}: no such file or folder: {missing}"
    # The bot asks for the native size (the base of --ar) before it builds the request.
    with pytest.raises(RequestError) as error:
        service.native_size(missing)
    assert str(error.value) == f"Model {missing!r}: no such file or folder: {missing}"  # the reason, never "right now"
    with pytest.raises(RequestError) as error:
        service.native_size("sdxl")
    assert str(error.value) == f"Unknown model 'sdxl'. Available models: tinyshapes, {missing}."
