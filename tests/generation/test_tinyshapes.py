"""The shipped tiny model: loads like any Stable Diffusion folder and visibly follows prompts."""

import numpy as np
import pytest
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from transformers import CLIPTokenizer

from training.tinyshapes import measure
from training.tinyshapes import contour, data
from training.tinyshapes.build import WEIGHTS_DIR
from training.tinyshapes.evaluate import render


@pytest.fixture(scope="module")
def pipe():
    pipe = StableDiffusionPipeline.from_pretrained(WEIGHTS_DIR, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_shipped_folder_is_small_and_safetensors_only():
    files = [p for p in WEIGHTS_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in {".safetensors", ".bin", ".pt", ".ckpt", ".pth"}]
    assert {p.suffix for p in weights} == {".safetensors"}
    assert sum(p.stat().st_size for p in files) < 10 * 1024 * 1024


def test_pipeline_loads_offline_and_renders_native_size(pipe):
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    image = render(pipe, ["a green triangle on a white background"], [0])[0]
    assert image.size == (size, size) == (data.IMAGE_SIZE, data.IMAGE_SIZE)


def test_every_vocabulary_word_is_one_token():
    tokenizer = CLIPTokenizer.from_pretrained(WEIGHTS_DIR / "tokenizer")
    for word in (*data.COLOURS, *data.SHAPES, "a", "an", "on", "background"):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


@pytest.mark.parametrize("colour", ["red", "blue"])
def test_colour_word_gives_that_colour_of_shape(pipe, colour):
    images = render(pipe, [f"a {colour} square on a white background"] * 2, [1, 2])
    assert [measure.read(image).colour for image in images] == [colour, colour]


def test_same_seed_gives_identical_pixels(pipe):
    first = render(pipe, ["a yellow circle on a black background"], [7])[0]
    again = render(pipe, ["a yellow circle on a black background"], [7])[0]
    other = render(pipe, ["a yellow circle on a black background"], [8])[0]
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_negative_prompt_steers_away_from_it(pipe):
    # "a circle" leaves the colour open; with the shipped weights seed 4 draws a red one.
    seeds = [4, 0]
    plain = render(pipe, ["a circle"] * 2, seeds)
    negated = render(pipe, ["a circle"] * 2, seeds, negative="red")
    assert not np.array_equal(np.asarray(plain[1]), np.asarray(negated[1]))
    assert measure.read(plain[0]).colour == "red"
    assert measure.read(negated[0]).colour != "red"
    assert measure.colour_share(negated[0], "red") < 0.05 < measure.colour_share(plain[0], "red")


def test_img2img_loads_from_same_components(pipe):
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    init = data.draw(data.one_shape("white", "square", "black", (64, 64), (32, 32), 36))
    kept = render(i2i, ["a white square on a black background"], [0], image=[init], strength=0.3)[0]
    assert measure.read(kept).colour == "white"


def test_training_images_are_deterministic_and_readable():
    for index in range(50):
        image, scene, caption = data.make_example(3, index, kind="one")
        again, _, caption_again = data.make_example(3, index, kind="one")
        assert np.array_equal(np.asarray(image), np.asarray(again)) and caption == caption_again
        reading = measure.read(image)
        assert (reading.colour, reading.background, reading.shape) == (scene.colour, scene.background, scene.shape)
        assert contour.read_shape(image).shape == scene.shape


def test_buckets_are_the_sizes_imagine_renders():
    from generation.flags import size_for_aspect_ratio

    assert data.BUCKETS["1:1"] == (64, 64)
    for ratio, (width, height) in data.BUCKETS.items():
        assert (width, height) == size_for_aspect_ratio(*map(int, ratio.split(":")), data.IMAGE_SIZE)


@pytest.mark.parametrize("ratio", data.ASPECT_RATIOS)
def test_every_bucket_draws_true_proportions_both_measures_agree(ratio):
    size = data.BUCKETS[ratio]
    for index in range(24):
        image, scene, _ = data.make_example(5, index, size, kind="one")
        assert image.size == size
        reading = measure.read(image)
        assert (reading.colour, reading.background, reading.shape) == (scene.colour, scene.background, scene.shape)
        assert contour.read_shape(image).shape == scene.shape


def test_corner_measure_needs_corners():
    """A square with well rounded corners is not a square to the corner count (the template overlap
    forgives it); a sharp one is."""
    from PIL import Image, ImageDraw

    def rounded(radius: float) -> Image.Image:
        canvas = Image.new("RGB", (256, 256), data.PALETTE["blue"])
        ImageDraw.Draw(canvas).rounded_rectangle([72, 72, 184, 184], radius=radius * 4, fill=data.PALETTE["red"])
        return canvas.resize((64, 64), Image.Resampling.BOX)

    assert contour.read_shape(rounded(0)).shape == "square"
    assert contour.read_shape(rounded(12)).shape == "circle"  # corner radius 43 % of the side


@pytest.mark.parametrize("ratio", ["16:9", "9:16"])
def test_wide_and_tall_renders_follow_the_prompt(pipe, ratio):
    width, height = data.BUCKETS[ratio]
    image = render(pipe, ["a red circle on a blue background"], [0], width=width, height=height)[0]
    assert image.size == (width, height)
    reading = measure.read(image)
    assert (reading.colour, reading.background, reading.shape) == ("red", "blue", "circle")
    assert contour.read_shape(image).shape == "circle"


def test_decoder_only_finetune_replaces_just_the_vae(tmp_path):
    """`train --stages decoder --finetune-from X` ships X with the tuned VAE: everything else byte-equal."""
    import json

    import torch

    from training.tinyshapes.build import build_vae, replace_vae

    source = StableDiffusionPipeline.from_pretrained(WEIGHTS_DIR)
    torch.manual_seed(0)
    vae = build_vae(source.vae.config.scaling_factor)
    replace_vae(WEIGHTS_DIR, vae, tmp_path / "weights", {"why": "test"})
    out = tmp_path / "weights"
    for kept in ["unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "vocabulary.json"]:
        assert (out / kept).read_bytes() == (WEIGHTS_DIR / kept).read_bytes()
    state = json.loads((out / "training_state.json").read_text())
    assert state["decoder"] == {"why": "test"} and state["stage"] == json.loads((WEIGHTS_DIR / "training_state.json").read_text())["stage"]
    loaded = StableDiffusionPipeline.from_pretrained(out)
    weight = next(iter(vae.state_dict()))
    assert torch.equal(loaded.vae.state_dict()[weight], vae.half().float().state_dict()[weight])
    assert not torch.equal(loaded.vae.state_dict()[weight], source.vae.state_dict()[weight])


def test_pyramid_noise_is_unit_variance_with_more_coarse_structure():
    import torch

    from training.tinyshapes.train import pyramid_noise

    torch.manual_seed(0)
    like = torch.zeros(64, 4, 16, 16)
    white, pyramid = torch.randn_like(like), pyramid_noise(like, 0.7)
    assert pyramid.shape == like.shape
    assert torch.allclose(pyramid.std(dim=(1, 2, 3)), torch.ones(64), atol=1e-4)
    # The mean over each 4x4 tile (what decides a layout in a 16x16 latent) varies about 2x more.
    coarse = lambda n: torch.nn.functional.avg_pool2d(n, 4).std().item()  # noqa: E731
    assert coarse(pyramid) > 1.8 * coarse(white)


def test_loss_weights_on_the_picture_match_min_snr_and_the_layout_floor():
    import torch

    from training.tinyshapes.train import picture_weight
    from training.tinyshapes.training_common import ALPHAS_CUMPROD

    snr = ALPHAS_CUMPROD / (1 - ALPHAS_CUMPROD)
    # Epsilon target: min-SNR-5 divided back to the noise's error; with a layout weight, at least 1/SNR up to it.
    assert torch.allclose(picture_weight(snr, 5.0, 0.0) / snr, snr.clamp(max=5) / snr)
    assert torch.allclose(picture_weight(snr, 5.0, 30.0) / snr,
                          torch.maximum(snr.clamp(max=5) / snr, (1 / snr).clamp(max=30)))
    # A large layout weight puts the picture's error at weight >= 1 at every step, the v target's loss at ~1
    # where noise dominates (instead of SNR, ~3e-4 at t = 900).
    weight = picture_weight(snr, 5.0, 1e6)
    assert bool((weight >= 1).all()) and abs(float(weight[900] / (snr[900] + 1)) - 1) < 1e-3


@pytest.mark.slow
def test_v_prediction_finetune_exports_a_pipeline_that_renders(tmp_path):
    """`train --prediction-type v_prediction` writes the target into the scheduler config, so every sampler
    made from it (and StableDiffusionPipeline itself) reads the UNet's output right."""
    from training.tinyshapes import train

    work = tmp_path / "work"
    train.main(["--work", str(work), "--target", str(work / "weights"), "--finetune-from", str(WEIGHTS_DIR),
                "--stages", "latents,unet", "--per-bucket", "2", "--no-upscale-bucket", "--batch", "4",
                "--unet-steps", "2", "--prediction-type", "v_prediction", "--layout-weight", "1e6"])
    tuned = StableDiffusionPipeline.from_pretrained(work / "weights", local_files_only=True)
    assert tuned.scheduler.config.prediction_type == "v_prediction"
    image = tuned("a red circle", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
