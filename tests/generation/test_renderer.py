"""The real shipped pipeline: seeds reproduce pixels, variations, img2img, progress and cancel."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
import torch
from gen_helpers import fast_request

from generation import RenderCancelled, RenderError, upscale_request, variation_request
from generation.batching import BATCH_TOLERANCE_MAX, BATCH_TOLERANCE_MEAN
from generation.request import BatchPlace
from generation.latents import initial_noise


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def mean_difference(a: PIL.Image.Image, b: PIL.Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def assert_within_batch_tolerance(alone: PIL.Image.Image, batched: PIL.Image.Image) -> None:
    """An image rendered alone vs inside a batch: rounding differences only (generation.batching)."""
    difference = np.abs(pixels(alone) - pixels(batched))
    assert difference.max() <= BATCH_TOLERANCE_MAX and difference.mean() <= BATCH_TOLERANCE_MEAN


@pytest.fixture(scope="module")
def parent(renderer):
    return renderer.render(fast_request(seed=11)).images[0]


def test_same_request_twice_gives_identical_pixels(renderer, parent):
    again = renderer.render(fast_request(seed=11)).images[0]
    assert again.seed == 11
    assert np.array_equal(pixels(again.image), pixels(parent.image))


def test_a_different_seed_gives_different_pixels(renderer, parent):
    other = renderer.render(fast_request(seed=12)).images[0]
    assert mean_difference(other.image, parent.image) > 1.0


def test_count_4_gives_four_seeds_each_reproducible_alone(renderer):
    result = renderer.render(fast_request(seed=100, count=4))
    assert [image.seed for image in result.images] == [100, 101, 102, 103]
    assert all(image.image.size == (64, 64) for image in result.images)
    assert [image.place for image in result.images] == [BatchPlace(4, index) for index in range(4)]  # one call
    for rendered in result.images:
        again = renderer.render(fast_request(seed=rendered.seed, count=1), place=rendered.place).images[0]
        assert np.array_equal(pixels(again.image), pixels(rendered.image))  # bit-exact in its recorded place
        alone = renderer.render(fast_request(seed=rendered.seed, count=1)).images[0]
        assert alone.place == BatchPlace(1, 0)
        assert_within_batch_tolerance(alone.image, rendered.image)


def test_variation_at_strength_0_is_its_parent(renderer, parent):
    variation = renderer.render(fast_request(seed=11, variation_seed=500, variation_strength=0.0)).images[0]
    assert np.array_equal(pixels(variation.image), pixels(parent.image))


def test_subtle_variation_differs_a_little(renderer, parent):
    request = variation_request(fast_request(seed=11), image_seed=11).replace(variation_seed=500)
    assert request.variation_strength == 0.15
    subtle = renderer.render(request).images[0]
    other_seed = renderer.render(fast_request(seed=500)).images[0]
    assert (subtle.seed, subtle.variation_seed, subtle.variation_strength) == (11, 500, 0.15)
    assert 0 < mean_difference(subtle.image, parent.image) < mean_difference(other_seed.image, parent.image)


def test_variations_of_one_grid_image_all_keep_its_seed(renderer, parent):
    # "V1" on a 4-image grid: every variation starts from image 1's seed, only the variation seeds differ.
    request = variation_request(fast_request(seed=11, count=4), image_seed=11, count=2).replace(variation_seed=500)
    result = renderer.render(request)
    assert [(image.seed, image.variation_seed) for image in result.images] == [(11, 500), (11, 501)]
    assert mean_difference(result.images[0].image, result.images[1].image) > 0
    second = result.images[1]
    second_again = renderer.render(request.replace(count=1, variation_seed=501), place=second.place).images[0]
    assert np.array_equal(pixels(second_again.image), pixels(second.image))


def test_variation_noise_is_a_slerp_that_keeps_the_noise_scale():
    shape = (1, 4, 64, 64)
    parent = initial_noise(shape, torch.Generator().manual_seed(1))
    for strength, expected_cosine in [(0.15, np.cos(0.15 * np.pi / 2)), (0.5, np.cos(0.5 * np.pi / 2))]:
        blended = initial_noise(shape, torch.Generator().manual_seed(1), 2, strength)
        cosine = torch.nn.functional.cosine_similarity(parent.flatten(), blended.flatten(), dim=0)
        assert cosine.item() == pytest.approx(expected_cosine, abs=0.02)
        assert blended.std().item() == pytest.approx(1.0, abs=0.05)


def png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_img2img_at_strength_0_returns_the_init_image(renderer, parent):
    result = renderer.render(fast_request(init_image=png(parent.image), strength=0.0))
    assert np.array_equal(pixels(result.images[0].image), pixels(parent.image))


def test_img2img_changes_the_image_reproducibly(renderer, parent):
    request = fast_request(init_image=png(parent.image), strength=0.75, seed=3)
    first, second = renderer.render(request).images[0], renderer.render(request).images[0]
    assert np.array_equal(pixels(first.image), pixels(second.image))
    assert mean_difference(first.image, parent.image) > 0


def test_upscale_doubles_the_size_with_the_same_prompt_and_seed(renderer, parent):
    request = upscale_request(fast_request(seed=11), parent.image, parent.seed)
    assert (request.width, request.height, request.seed, request.strength) == (128, 128, 11, 0.35)
    result = renderer.render(request.replace(num_inference_steps=6))
    assert result.images[0].image.size == (128, 128)


def test_progress_reports_every_step_with_occasional_previews(renderer):
    events = []
    renderer.render(fast_request(num_inference_steps=6, count=2), on_progress=events.append)
    assert [(event.step, event.total) for event in events] == [(step, 6) for step in range(1, 7)]  # one call
    previews = [event.preview for event in events if event.preview is not None]
    assert previews and all(preview.size == (64, 64) for preview in previews)


def test_cancel_stops_the_render_at_the_next_step(renderer):
    events = []

    def cancel_after_two_steps():
        return len(events) >= 2

    with pytest.raises(RenderCancelled):
        renderer.render(
            fast_request(num_inference_steps=8, count=3), on_progress=events.append, is_cancelled=cancel_after_two_steps
        )
    assert len(events) == 2  # no step ran after the cancel was seen


def test_an_unreadable_init_image_fails_with_a_readable_reason(renderer):
    with pytest.raises(RenderError) as error:
        renderer.render(fast_request(init_image=b"\x89PNG but not really"))
    assert error.value.reason == "The init image could not be read; use a PNG or JPEG image."


def test_out_of_memory_frees_cached_memory_and_fails_retryably(renderer, monkeypatch):
    import generation.renderer as renderer_module

    freed = []
    monkeypatch.setattr(renderer_module, "free_memory", lambda: freed.append(True))

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(renderer_module, "render_call", out_of_memory)  # the pipeline call
    with pytest.raises(RenderError) as error:
        renderer.render(fast_request(count=2))
    assert error.value.retryable and freed == [True]
    assert error.value.reason == (
        "Ran out of GPU memory rendering 2 image(s) at 64x64; try a smaller size or fewer images."
    )


def test_img2img_shares_the_txt2img_weights_in_the_chosen_dtype(tinyshapes):
    from generation.renderer import Renderer

    bf16 = Renderer(tinyshapes, device="cpu", dtype="bfloat16", cpu_threads=1)
    bf16.load("tinyshapes")
    loaded = bf16.loaded
    for name in ("unet", "vae", "text_encoder"):
        assert getattr(loaded.img2img, name) is getattr(loaded.txt2img, name)
        assert getattr(loaded.txt2img, name).dtype == torch.bfloat16
    result = bf16.render(fast_request(num_inference_steps=2))
    assert result.images[0].image.size == (64, 64)


def test_auto_dtype_is_fp16_on_cuda_and_fp32_elsewhere():
    from generation.renderer import pick_dtype

    assert pick_dtype("auto", torch.device("cuda")) is torch.float16
    assert pick_dtype("auto", torch.device("cpu")) is torch.float32
    assert pick_dtype("auto", torch.device("mps")) is torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ValueError, match="Unknown dtype 'half'. Use one of: auto, float16, fp16, bfloat16, float32."):
        pick_dtype("half", torch.device("cpu"))
