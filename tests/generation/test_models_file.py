"""Per-model configuration: ModelSpec and the TOML models file (MODELS_FILE)."""

from __future__ import annotations

import pytest

from generation.models import BUILTIN_MODELS, ModelSpec
from generation.models_file import ModelConfigError, load_model_specs


def write(tmp_path, text):
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_models_are_read_in_order_with_their_defaults(tmp_path):
    (tmp_path / "sdxl").mkdir()
    path = write(tmp_path, '''
[models.tinyshapes]
steps = 12

[models.sdxl]
display_name = "SDXL Lightning"
path = "sdxl"
family = "sdxl"
steps = 4
guidance = 0
sampler = "Euler"
size = 1024
negative_prompt = "blurry"

[models.flux]
path = "black-forest-labs/FLUX.1-schnell"
true_cfg_scale = 1
dtype = "bfloat16"
''')
    specs = load_model_specs(path)
    assert list(specs) == ["tinyshapes", "sdxl", "flux"]
    tiny = specs["tinyshapes"]
    assert (tiny.path, tiny.steps, tiny.guidance, tiny.sampler) == (BUILTIN_MODELS["tinyshapes"].path, 12, 5.0, "DPM++ 2M")
    sdxl = specs["sdxl"]
    assert sdxl.path == str(tmp_path / "sdxl")  # relative to the file
    assert (sdxl.label, sdxl.family, sdxl.size) == ("SDXL Lightning", "sdxl", 1024)
    assert sdxl.request_defaults() == {
        "num_inference_steps": 4, "guidance_scale": 0, "sampler": "Euler", "negative_prompt": "blurry"
    }
    flux = specs["flux"]
    assert (flux.path, flux.label, flux.true_cfg_scale, flux.dtype) == (
        "black-forest-labs/FLUX.1-schnell", "flux", 1, "bfloat16"
    )
    assert flux.request_defaults() == {}


@pytest.mark.parametrize(
    "body, message",
    [
        ('[models.a]\npath = "x"\nstep = 3\n', "model 'a': unknown key(s) step; allowed: "),
        ('[models.a]\npath = "x"\nsteps = "3"\n', "model 'a': steps must be int, got '3'."),
        ('[models.a]\nsteps = 3\n', "model 'a': needs path = a diffusers folder, a hub id or a .safetensors file."),
        ('[models.a]\npath = "x"\nfamily = "sd4"\n', "model 'a': family must be one of sd, sdxl, sd3, flux, kontext, qwen-edit, klein, got 'sd4'."),
        ('[models.a]\npath = "x"\nsampler = "Euler b"\n', "model 'a': unknown sampler 'Euler b'; samplers: "),
        ('[models.a]\npath = "x"\nsize = 1004\n', "model 'a': size must be a multiple of 8 from 64 to 4096, got 1004."),
        ('model = "a"\n', "unknown top-level key(s) model; put models under [models.NAME]."),
        ('', "no models; add at least one [models.NAME] table."),
        ('[models\n', "not valid TOML"),
    ],
)
def test_mistakes_name_the_file_model_and_key(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(ModelConfigError) as error:
        load_model_specs(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(ModelConfigError, match="no such models file"):
        load_model_specs(tmp_path / "nope.toml")


def test_a_spec_is_a_model_source():
    spec = ModelSpec("x", "/models/x.safetensors", config="/models/x-config", display_name="X")
    assert spec.is_single_file and spec.config_source == "/models/x-config" and spec.label == "X"


def test_renderer_defaults_layer_the_spec_over_the_family(tiny_dirs):
    from generation.renderer import Renderer

    spec = ModelSpec("lightning", str(tiny_dirs["sdxl"]), steps=4, guidance=1.5)
    renderer = Renderer(spec, device="cpu")
    assert renderer.defaults("lightning") == {"num_inference_steps": 4, "guidance_scale": 1.5, "sampler": "DPM++ 2M Karras"}
    assert renderer.defaults("tinyshapes") == {"num_inference_steps": 20, "guidance_scale": 5.0, "sampler": "DPM++ 2M"}


def test_the_hub_probe_gives_up_quickly(monkeypatch):
    import socket
    import threading

    from generation import models

    release = threading.Event()

    def hanging_lookup(*args, **kwargs):  # a DNS lookup that hangs: the socket timeout does not cover it
        release.wait(60)  # bounded, so a broken probe fails the test instead of hanging it
        raise OSError("no network")

    monkeypatch.setattr(socket, "create_connection", hanging_lookup)
    assert models.hub_reachable(timeout=0.2) is False
    assert not release.is_set()  # it answered while the lookup still hung (no waiting on the lookup)
    release.set()
