"""SDXL, SD3 and Flux (tiny random-weight pipelines) through the renderer: every feature, per family."""

from __future__ import annotations

import io
import json

import numpy as np
import PIL.Image
import pytest
import torch
from gen_helpers import fast_request

from generation import GenerationRequest, RenderCancelled, RequestError, upscale_request, variation_request
from generation.families import FAMILIES, read_model_info
from generation.models import ModelSource, ModelSpec

FAMILY_OF = {"sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}
DEFAULT_SAMPLER = {"sdxl": "DPM++ 2M Karras", "sd3": "Euler", "flux": "Euler"}


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def difference(a: PIL.Image.Image, b: PIL.Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module", params=list(FAMILY_OF))
def family(request, family_renderer):
    family_renderer.load(request.param)
    return request.param


def request_for(family, renderer, **changes):
    defaults = renderer.defaults(family)
    return fast_request(model=family, **{**defaults, "num_inference_steps": 4, "seed": 3, **changes})


def test_the_family_is_read_from_the_config_with_its_defaults(family, family_renderer):
    info = family_renderer.model_info(family)
    assert info.family.key == FAMILY_OF[family]
    assert info.label == f"tiny {family}"
    assert family_renderer.native_size(family) == 64
    assert family_renderer.defaults(family)["sampler"] == DEFAULT_SAMPLER[family]
    loaded = family_renderer.loaded
    assert type(loaded.txt2img).__name__ == info.pipeline_class
    assert type(loaded.img2img).__name__.endswith("Img2ImgPipeline")
    assert loaded.img2img.vae is loaded.txt2img.vae  # one copy of the weights


def test_count_2_same_seed_identical_other_seed_differs(family, family_renderer):
    result = family_renderer.render(request_for(family, family_renderer, count=2))
    assert [image.seed for image in result.images] == [3, 4]
    assert all(image.image.size == (64, 64) for image in result.images)
    second = result.images[1]  # rendered in one call with the first: again in that place, bit-exact
    again = family_renderer.render(request_for(family, family_renderer, seed=4), place=second.place).images[0]
    assert np.array_equal(pixels(again.image), pixels(second.image))
    assert difference(result.images[0].image, result.images[1].image) > 0.5


def test_variation_in_the_family_latent_space(family, family_renderer):
    parent = family_renderer.render(request_for(family, family_renderer)).images[0]
    same = family_renderer.render(request_for(family, family_renderer, variation_seed=9, variation_strength=0.0))
    assert np.array_equal(pixels(same.images[0].image), pixels(parent.image))
    request = variation_request(request_for(family, family_renderer), image_seed=3).replace(variation_seed=9)
    subtle = family_renderer.render(request).images[0]
    assert (subtle.seed, subtle.variation_seed, subtle.variation_strength) == (3, 9, 0.15)
    assert difference(subtle.image, parent.image) > 0
    assert np.array_equal(pixels(family_renderer.render(request).images[0].image), pixels(subtle.image))


def test_initial_noise_is_drawn_through_the_pipelines_own_preparation(family, family_renderer):
    loaded = family_renderer.loaded
    noise = loaded.family.initial_noise(loaded.txt2img, 64, 64, torch.Generator().manual_seed(3), None, 0.0)
    blended = loaded.family.initial_noise(loaded.txt2img, 64, 64, torch.Generator().manual_seed(3), 9, 0.5)
    expected = {"sdxl": (1, 4, 8, 8), "sd3": (1, 16, 8, 8), "flux": (1, 16, 64)}[family]  # Flux: 4x4 tokens of 2x2x16
    assert tuple(noise.shape) == expected and noise.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(noise.flatten(), blended.flatten(), dim=0).item()
    assert cosine == pytest.approx(np.cos(0.5 * np.pi / 2), abs=0.15)


def test_img2img_and_upscale(family, family_renderer):
    parent = family_renderer.render(request_for(family, family_renderer)).images[0]
    kept = family_renderer.render(request_for(family, family_renderer, init_image=png(parent.image), strength=0.0))
    assert np.array_equal(pixels(kept.images[0].image), pixels(parent.image))
    edit = request_for(family, family_renderer, init_image=png(parent.image), strength=0.75, seed=5)
    first, second = family_renderer.render(edit).images[0], family_renderer.render(edit).images[0]
    assert np.array_equal(pixels(first.image), pixels(second.image))
    upscale = upscale_request(request_for(family, family_renderer), parent.image, parent.seed)
    result = family_renderer.render(upscale)
    assert result.images[0].image.size == (128, 128)


def test_progress_with_previews_and_cancel(family, family_renderer):
    events = []
    family_renderer.render(request_for(family, family_renderer, count=2), on_progress=events.append)
    assert [(event.step, event.total) for event in events] == [(step, 4) for step in range(1, 5)]  # one call
    previews = [event.preview for event in events if event.preview is not None]
    assert previews and all(preview.size == (64, 64) for preview in previews)

    seen = []
    with pytest.raises(RenderCancelled):
        family_renderer.render(
            request_for(family, family_renderer, count=2, num_inference_steps=6),
            on_progress=seen.append,
            is_cancelled=lambda: len(seen) >= 2,
        )
    assert len(seen) == 2


def test_every_sampler_of_the_family_renders(family, family_renderer):
    info = family_renderer.model_info(family)
    for sampler in info.sampler_names:
        image = family_renderer.render(request_for(family, family_renderer, sampler=sampler)).images[0].image
        assert not np.isnan(np.asarray(image, dtype=float)).any() and image.size == (64, 64)


# -- what each family refuses, before anything is queued --


def test_a_sampler_the_family_lacks_is_refused_naming_the_valid_ones(family_renderer):
    with pytest.raises(RequestError) as error:
        family_renderer.check_request(request_for("flux", family_renderer, sampler="DPM++ 2M Karras"))
    assert str(error.value) == (
        "The sampler 'DPM++ 2M Karras' does not work with tiny flux (Flux.1); choose one of: Euler, DPM++ 2M, UniPC."
    )
    family_renderer.check_request(request_for("sd3", family_renderer, sampler="Heun"))  # SD3 has Heun, Flux not
    family_renderer.check_request(request_for("sdxl", family_renderer, sampler="DDIM"))


def test_flow_families_need_sizes_in_multiples_of_16(family_renderer):
    with pytest.raises(RequestError, match=r"needs a width that is a multiple of 16; 88 is not \(try 80 or 96\)"):
        family_renderer.check_request(request_for("flux", family_renderer, width=88))
    family_renderer.check_request(request_for("sdxl", family_renderer, width=88))


def test_flux_takes_a_negative_prompt_through_true_cfg(family_renderer):
    plain = family_renderer.render(request_for("flux", family_renderer)).images[0]
    negative = family_renderer.render(request_for("flux", family_renderer, negative_prompt="blue")).images[0]
    assert difference(plain.image, negative.image) > 0
    arguments = family_renderer.loaded.family.call_arguments(
        request_for("flux", family_renderer, negative_prompt="blue"), family_renderer.model_info("flux")
    )
    assert (arguments["negative_prompt"], arguments["true_cfg_scale"]) == ("blue", 4.0)


def test_flux_without_true_cfg_refuses_a_negative_prompt(tiny_dirs):
    from generation.renderer import Renderer

    spec = ModelSpec("schnellish", str(tiny_dirs["flux"]), display_name="Flux fast", size=64, true_cfg_scale=1.0)
    renderer = Renderer(spec, device="cpu", cpu_threads=1)
    with pytest.raises(RequestError) as error:
        renderer.check_request(fast_request(model="schnellish", sampler="Euler", negative_prompt="blue"))
    assert str(error.value) == (
        "Flux fast (Flux.1) has no negative prompt: its guidance is distilled, and true CFG is off for this model. "
        "Remove the negative prompt (--no)."
    )


def test_the_prompt_window_of_t5_families_is_the_t5_window(family_renderer):
    tokenizer = family_renderer.tokenizer("flux")
    assert type(tokenizer).__name__.startswith("T5")
    assert tokenizer.model_max_length == 128  # the tiny tokenizer's window (real Flux-dev: 512)
    assert type(family_renderer.tokenizer("sdxl")).__name__ == "CLIPTokenizer"


def test_an_unsupported_pipeline_is_named(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "MyVideoPipeline"}))
    with pytest.raises(RequestError) as error:
        read_model_info(ModelSource("custom", str(folder)))
    assert str(error.value) == (
        "Model 'custom' is a MyVideoPipeline, which imagine-bot cannot render; "
        "supported families: SD 1.x/2.x, SDXL, SD3/3.5, Flux.1, and for instruction edits FLUX.1 Kontext, "
        "Qwen-Image-Edit (and Plus) and FLUX.2 [klein]."
    )


def test_other_autopipeline_families_are_untested_but_accepted(tmp_path):
    folder = tmp_path / "pixart"
    for sub, config in {"vae": {"block_out_channels": [1, 2, 3, 4], "latent_channels": 4},
                        "transformer": {"sample_size": 128}}.items():
        (folder / sub).mkdir(parents=True)
        (folder / sub / "config.json").write_text(json.dumps(config))
    index = {"_class_name": "PixArtSigmaPipeline", "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
             "vae": ["diffusers", "AutoencoderKL"], "transformer": ["diffusers", "PixArtTransformer2DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    info = read_model_info(ModelSource("pixart", str(folder)))
    assert (info.family.key, info.family.tested, info.native_size) == ("other", False, 1024)
    with pytest.raises(RequestError, match="Variations are not available for pixart"):
        info.family.check_request(fast_request(model="pixart", variation_seed=2, variation_strength=0.15), info)


def test_a_missing_folder_and_an_offline_hub_id_fail_with_one_line(tmp_path, monkeypatch):
    with pytest.raises(RequestError, match="^Model 'gone': no such file or folder: /nonexistent/model$"):
        read_model_info(ModelSource("gone", "/nonexistent/model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RequestError, match="HF_HUB_OFFLINE is set and it is not in the local cache"):
        read_model_info(ModelSource("hub", "nobody-here/no-such-model"))


def test_family_table_covers_the_first_class_families():
    assert set(FAMILIES) == {"sd", "sdxl", "sd3", "flux", "kontext", "qwen-edit", "klein"}  # + generation.edit_families
    assert FAMILIES["flux"].latent_packing == 2 and FAMILIES["flux"].guidance == "distilled"
    assert FAMILIES["sd3"].flow_matching and not FAMILIES["sdxl"].flow_matching


def test_only_an_instruction_edit_family_takes_an_instruction_edit(tinyshapes):
    info = read_model_info(tinyshapes)
    request = GenerationRequest("make it blue", edit_mode="instruction")
    with pytest.raises(RequestError, match="does not edit by instruction"):
        info.family.check_request(request, info)
