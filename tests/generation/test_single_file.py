"""The shipped weights give identical images from the diffusers folder and from one LDM-layout checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from gen_helpers import fast_request
from safetensors import safe_open

from generation.models import ModelSource
from generation.single_file import convert_folder_to_single_file


@pytest.fixture(scope="module")
def checkpoint(tinyshapes_dir, tmp_path_factory):
    return convert_folder_to_single_file(tinyshapes_dir, tmp_path_factory.mktemp("single") / "tinyshapes.safetensors")


def test_checkpoint_uses_the_original_sd_key_layout(checkpoint):
    with safe_open(str(checkpoint), "pt") as file:
        keys = set(file.keys())
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys  # UNet conv_in
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in keys  # mid attention
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in keys  # VAE, LDM's reversed up order
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys
    assert not any(key.startswith(("unet.", "vae.", "down_blocks.")) for key in keys)


def test_folder_and_single_file_give_identical_images(renderer, checkpoint, tinyshapes_dir):
    from generation.renderer import Renderer

    single = ModelSource("tinyshapes-single-file", str(checkpoint), config=str(tinyshapes_dir))
    single_file_renderer = Renderer(single, device="cpu", cpu_threads=1)
    single_file_renderer.load(single.name)
    try:
        for sampler in ("DPM++ 2M", "Euler a"):
            request = fast_request(seed=21, sampler=sampler)
            from_folder = renderer.render(request).images[0].image
            from_file = single_file_renderer.render(request.replace(model=single.name)).images[0].image
            assert np.array_equal(np.asarray(from_folder), np.asarray(from_file))
    finally:
        single_file_renderer.unload()


def test_an_old_style_ckpt_gives_the_same_image_as_the_folder(renderer, tinyshapes_dir, tmp_path):
    from generation.renderer import Renderer

    ckpt = convert_folder_to_single_file(tinyshapes_dir, tmp_path / "tinyshapes.ckpt")
    single = ModelSource("tinyshapes-ckpt", str(ckpt), config=str(tinyshapes_dir))
    assert single.is_single_file
    ckpt_renderer = Renderer(single, device="cpu", cpu_threads=1)
    request = fast_request(seed=22)
    from_file = ckpt_renderer.render(request.replace(model=single.name)).images[0].image
    ckpt_renderer.unload()
    from_folder = renderer.render(request).images[0].image
    assert np.array_equal(np.asarray(from_folder), np.asarray(from_file))


async def test_the_service_switches_models_on_request_and_reports_load_time(checkpoint, tinyshapes):
    from generation import GenerationService, Limits
    from generation.renderer import Renderer

    single = ModelSource("tinyshapes-single-file", str(checkpoint), config=tinyshapes.path)
    renderer = Renderer(tinyshapes, device="cpu", cpu_threads=1, extra_models=(single,))
    service = GenerationService(renderer, Limits(models=("tinyshapes", single.name)))
    await service.start()
    try:
        assert await service.load_model("tinyshapes") > 0
        same = await service.submit(fast_request(), owner="alice").result()
        switched = await service.submit(fast_request(model=single.name), owner="alice").result()
        again = await service.submit(fast_request(model=single.name), owner="alice").result()
        assert (same.model_load_s, again.model_load_s) == (0.0, 0.0)
        assert switched.model_load_s > 0
        assert renderer.loaded.source.name == single.name  # one model kept loaded at a time
    finally:
        await service.close()


def test_an_sdxl_checkpoint_in_the_original_layout_renders_like_its_folder(tiny_dirs, tmp_path):
    """SDXL single files load through from_single_file with the folder as config: identical pixels."""
    from generation.renderer import Renderer

    checkpoint = convert_folder_to_single_file(tiny_dirs["sdxl"], tmp_path / "tiny-sdxl.safetensors")
    with safe_open(str(checkpoint), "pt") as file:
        keys = set(file.keys())
    assert "model.diffusion_model.label_emb.0.0.weight" in keys  # SDXL's add_embedding
    assert "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight" in keys
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys  # open_clip layout
    assert "conditioner.embedders.1.model.text_projection" in keys
    folder = Renderer(ModelSource("folder", str(tiny_dirs["sdxl"])), device="cpu", cpu_threads=1)
    single = Renderer(ModelSource("single", str(checkpoint), config=str(tiny_dirs["sdxl"])), device="cpu",
                      cpu_threads=1)
    assert single.model_info("single").family.key == "sdxl"
    request = fast_request(seed=5, sampler="Euler")
    from_folder = folder.render(request.replace(model="folder")).images[0].image
    from_file = single.render(request.replace(model="single")).images[0].image
    assert type(single.loaded.txt2img).__name__ == "StableDiffusionXLPipeline"
    assert np.array_equal(np.asarray(from_folder), np.asarray(from_file))
