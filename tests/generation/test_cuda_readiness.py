"""CUDA code paths that can be checked on a CPU: dtype per family, offload modes, VAE tiling."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from gen_helpers import fast_request

from generation.families import FAMILIES


@pytest.mark.parametrize(
    "family, bf16, expected",
    [
        ("sd", True, torch.float16),
        ("sdxl", True, torch.float16),
        ("sd3", True, torch.bfloat16),
        ("flux", True, torch.bfloat16),
        ("flux", False, torch.float16),  # a GPU without bf16 (pre-Ampere)
    ],
)
def test_auto_dtype_per_family_on_cuda(monkeypatch, family, bf16, expected):
    import generation.devices as renderer_module

    monkeypatch.setattr(renderer_module, "_cuda_has_bf16", lambda: bf16)
    assert renderer_module.pick_dtype("auto", torch.device("cuda"), FAMILIES[family]) is expected
    assert renderer_module.pick_dtype("auto", torch.device("cpu"), FAMILIES[family]) is torch.float32
    assert renderer_module.pick_dtype("float16", torch.device("cuda"), FAMILIES[family]) is torch.float16


def test_a_model_spec_may_pick_its_own_dtype(tiny_dirs):
    from generation.models import ModelSpec
    from generation.renderer import Renderer

    renderer = Renderer(ModelSpec("bf", str(tiny_dirs["sd3"]), dtype="bfloat16", size=64), device="cpu", cpu_threads=1)
    renderer.load("bf")
    assert renderer.loaded.dtype is torch.bfloat16 and renderer.loaded.txt2img.transformer.dtype is torch.bfloat16
    image = renderer.render(fast_request(model="bf", sampler="Euler", num_inference_steps=2)).images[0].image
    assert image.size == (64, 64)


def test_offload_needs_cuda_and_is_checked(caplog):
    from generation.renderer import Renderer

    with pytest.raises(ValueError, match="Unknown offload 'half'. Use one of: none, model, sequential."):
        Renderer(device="cpu", offload="half")
    with caplog.at_level(logging.WARNING, logger="generation.devices"):
        renderer = Renderer(device="cpu", offload="model")
    assert renderer.offload == "none"
    assert "offload=model needs a CUDA device" in caplog.text


@pytest.mark.parametrize("offload, method", [("model", "enable_model_cpu_offload"),
                                             ("sequential", "enable_sequential_cpu_offload"), ("none", "to")])
def test_offload_modes_place_the_pipeline_through_accelerate(offload, method):
    from generation.devices import place_pipeline

    calls = []

    class FakePipe:
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append((name, args, kwargs))

    place_pipeline(FakePipe(), torch.device("cuda"), offload)  # as on a GPU machine
    assert calls and calls[0][0] == method
    assert torch.device("cuda") in (*calls[0][1], *calls[0][2].values())


def test_vae_tiling_above_the_native_size(tiny_specs):
    from generation.pipeline_call import set_vae_tiling
    from generation.renderer import Renderer

    renderer = Renderer(tiny_specs["sdxl"], device="cpu", cpu_threads=1)
    request = fast_request(model="sdxl", sampler="Euler", width=128, height=128, num_inference_steps=2)
    plain = renderer.render(request).images[0].image
    assert not renderer.loaded.txt2img.vae.use_tiling  # auto: never on a CPU (nothing to save; same pixels)
    renderer.vae_tiling = "on"
    tiled = renderer.render(request).images[0].image
    assert renderer.loaded.txt2img.vae.use_tiling and tiled.size == plain.size == (128, 128)
    renderer.vae_tiling, renderer.device = "auto", torch.device("cuda")  # what a GPU would decide
    set_vae_tiling(renderer.loaded, request, renderer.vae_tiling, renderer.device)
    assert renderer.loaded.txt2img.vae.use_tiling
    set_vae_tiling(renderer.loaded, request.replace(width=64, height=64), renderer.vae_tiling, renderer.device)
    assert not renderer.loaded.txt2img.vae.use_tiling
    renderer.device = torch.device("cpu")
    assert not np.isnan(np.asarray(tiled, dtype=float)).any()


def test_gpu_check_script_builds_its_pipelines_from_full_size_configs():
    from benchmarks import gpu_check

    assert gpu_check.SDXL_UNET["block_out_channels"] == [320, 640, 1280]
    assert gpu_check.FLUX_TRANSFORMER["num_layers"] == 19 and gpu_check.FLUX_TRANSFORMER["num_single_layers"] == 38
    # the script itself works end to end on a CPU at a toy scale
    report = gpu_check.main(["--device", "cpu", "--toy", "--steps", "2"])
    assert [line["model"] for line in report] == ["sdxl", "flux"]
    assert all(line["nan"] is False for line in report)


def test_a_vae_that_encodes_to_nan_gives_grey_previews_not_a_failed_load(caplog):
    from types import SimpleNamespace

    from generation.latents import LatentPreview

    class NanVae(torch.nn.Module):
        config = SimpleNamespace(scaling_factor=0.13, shift_factor=None)

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def encode(self, images):
            mean = torch.full((len(images), 4, images.shape[2] // 8, images.shape[3] // 8), float("nan"))
            return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean))

    with caplog.at_level(logging.WARNING, logger="generation.latents"):
        preview = LatentPreview(NanVae(), 8)
    assert "previews will be grey" in caplog.text
    image = preview.image(torch.randn(1, 4, 8, 8))
    assert image.size == (64, 64) and image.getpixel((0, 0)) == (128, 128, 128)
