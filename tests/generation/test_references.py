"""--sref/--sw and --oref/--ow: flags and validation, a tiny IP-Adapter on the shipped SD 1.x model, reference
pictures on an edit model that takes several (FLUX.2 [klein]), and refusals where a model takes none."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import PIL.Image
import pytest

from generation import apply_prompt_flags
from generation.__main__ import main
from generation.families import read_model_info
from generation.metadata import parse_a1111_parameters, rendered_png
from generation.models import ModelSource, ModelSpec
from generation.references import IpAdapters, adapter_scale, check_references
from generation.request import GenerationRequest, Limits, RequestError
from generation.validation import validate_request

from test_edit_families import edit_dirs, picture, pixels, png_bytes  # noqa: F401  (edit_dirs: a fixture)

ADAPTER = "ip-adapter_tiny.safetensors"


def stripes() -> PIL.Image.Image:
    """A reference unlike anything tinyshapes draws: white stripes on black."""
    values = np.zeros((64, 64, 3), np.uint8)
    values[::8] = 255
    return PIL.Image.fromarray(values)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tinyshapes_dir):
    from tiny_edit_pipelines import write_tiny_ip_adapter

    folder = tmp_path_factory.mktemp("ip-adapters")
    write_tiny_ip_adapter(folder, tinyshapes_dir, name=ADAPTER)
    return folder


@pytest.fixture(scope="module")
def adapter_renderer(adapter_dir, tinyshapes_dir):
    from generation.renderer import Renderer

    spec = ModelSpec("tinyshapes", str(tinyshapes_dir), ip_adapter=ADAPTER)
    return Renderer(spec, device="cpu", cpu_threads=1, ip_adapter_dir=adapter_dir)


def test_flags_and_validation():
    request = apply_prompt_flags(GenerationRequest("a cat --sref https://example.com/style.png --sw 250 --ow 10 "
                                                   "--oref https://example.com/dog.png"))
    assert request.prompt == "a cat"
    assert (request.sref_url, request.sref_weight) == ("https://example.com/style.png", 250)
    assert (request.oref_url, request.oref_weight) == ("https://example.com/dog.png", 10)
    validate_request(request, Limits())
    with pytest.raises(RequestError, match="Style weight must be a whole number from 0 to 1000"):
        validate_request(request.replace(sref_weight=1001), Limits())
    with pytest.raises(RequestError, match="Object weight weighs the object reference: add --oref"):
        validate_request(GenerationRequest("a cat", oref_weight=50), Limits())
    with pytest.raises(RequestError, match="needs a picture's URL"):
        validate_request(GenerationRequest("a cat", sref_url="style.png"), Limits())
    with pytest.raises(RequestError, match="not a readable image"):
        validate_request(GenerationRequest("a cat", sref_image=b"not a picture"), Limits())
    assert GenerationRequest("a cat", sref_image=stripes()).sref_image == png_bytes(stripes())
    assert adapter_scale(100) == pytest.approx(0.6) and adapter_scale(0) == 0.0
    assert adapter_scale(400) == pytest.approx(1.2)


def test_a_style_reference_through_the_ip_adapter_changes_the_picture_and_is_recorded(adapter_renderer):
    request = GenerationRequest("a red circle on a blue background", width=64, height=64, num_inference_steps=8,
                                seed=3, model="tinyshapes")
    plain = adapter_renderer.render(request).images[0].image
    styled_request = request.replace(sref_image=png_bytes(stripes()), sref_weight=300)
    adapter_renderer.check_request(styled_request)
    result = adapter_renderer.render(styled_request)
    styled = result.images[0].image
    assert np.abs(pixels(styled) - pixels(plain)).mean() > 5.0
    assert np.array_equal(pixels(adapter_renderer.render(styled_request).images[0].image), pixels(styled))
    subject = adapter_renderer.render(request.replace(oref_image=png_bytes(stripes()))).images[0].image
    assert np.abs(pixels(subject) - pixels(styled)).mean() > 1.0  # every block, not only the style ones
    # Without a reference the adapter is unloaded: the exact base model again.
    assert np.array_equal(pixels(adapter_renderer.render(request).images[0].image), pixels(plain))
    text = PIL.Image.open(io.BytesIO(rendered_png(styled_request, result.images[0]))).text["parameters"]
    recorded = parse_a1111_parameters(text)
    assert recorded["Style reference"] == hashlib.sha256(png_bytes(stripes())).hexdigest()
    assert recorded["Style weight"] == "300"
    assert "Object reference" not in recorded


def test_the_cli_takes_a_reference_with_the_models_file_adapter(adapter_dir, tinyshapes_dir, tmp_path, capsys):
    models = tmp_path / "models.toml"
    models.write_text(f'[models.tiny]\npath = "{tinyshapes_dir}"\nip_adapter = "{ADAPTER}"\n')
    stripes().save(tmp_path / "ref.png")
    output = tmp_path / "out.png"
    common = ["--models-file", str(models), "--model", "tiny", "--steps", "4", "--threads", "1", "--seed", "2"]
    assert main(["a red circle", "--oref", str(tmp_path / "ref.png"), "--ow", "500", "--ip-adapter-dir",
                 str(adapter_dir), "-o", str(output), *common]) == 0
    assert parse_a1111_parameters(PIL.Image.open(output).text["parameters"])["Object weight"] == "500"
    # Without IP_ADAPTER_DIR the same model cannot take it: one line, nothing rendered.
    assert main(["a red circle", "--oref", str(tmp_path / "ref.png"), "-o", str(tmp_path / "no.png"), *common]) == 2
    assert "no IP-Adapter is set up" in capsys.readouterr().err
    assert not (tmp_path / "no.png").exists()


def test_an_edit_model_takes_references_as_pictures(edit_dirs):  # noqa: F811
    from generation.renderer import Renderer

    renderer = Renderer(ModelSource("klein", str(edit_dirs["klein"])), device="cpu", cpu_threads=1)
    request = GenerationRequest("make it blue", width=96, height=64, num_inference_steps=2, seed=3,
                                guidance_scale=1.0, sampler="Euler", init_image=png_bytes(picture()), model="klein")
    plain = renderer.render(request).images[0].image
    referenced_request = request.replace(sref_image=png_bytes(stripes()), oref_image=png_bytes(picture(64, 64)))
    renderer.check_request(referenced_request)
    referenced = renderer.render(referenced_request).images[0].image
    # Random tiny weights attend only weakly to extra pictures: a small but real change.
    assert np.abs(pixels(referenced) - pixels(plain)).mean() > 0.005
    assert np.array_equal(pixels(renderer.render(referenced_request).images[0].image), pixels(referenced))


def test_models_that_cannot_take_a_reference_refuse_it(edit_dirs, tinyshapes):  # noqa: F811
    none = IpAdapters(None)
    reference = png_bytes(stripes())
    edit = GenerationRequest("make it blue", init_image=png_bytes(picture()), sref_image=reference)
    kontext = read_model_info(ModelSource("kontext", str(edit_dirs["kontext"])))
    with pytest.raises(RequestError, match=r"takes 1 picture\(s\) per render.*remove --sref"):
        check_references(edit, kontext, none, None)
    qwen = read_model_info(ModelSource("qwen", str(edit_dirs["qwen-edit"])))
    with pytest.raises(RequestError, match="Qwen-Image-Edit Plus"):
        check_references(edit.replace(sref_image=None, oref_url="https://example.com/a.png"), qwen, none, None)
    plus = read_model_info(ModelSource("plus", str(edit_dirs["qwen-edit-plus"])))
    check_references(edit.replace(oref_image=reference), plus, none, None)  # 3 pictures: edit + 2 references
    shipped = read_model_info(tinyshapes)
    with pytest.raises(RequestError, match="no IP-Adapter is set up"):
        check_references(GenerationRequest("a cat", sref_image=reference), shipped, none, tinyshapes)
    with pytest.raises(RequestError, match="not with a zoom edit; remove --sref"):
        check_references(GenerationRequest("a cat", sref_image=reference, edit_mode="zoom"), shipped, none, tinyshapes)
    missing = ModelSpec("tinyshapes", tinyshapes.path, ip_adapter="gone.safetensors")
    with pytest.raises(RequestError, match="not in IP_ADAPTER_DIR"):
        check_references(GenerationRequest("a cat", sref_image=reference), shipped, IpAdapters("/nonexistent"), missing)
    check_references(GenerationRequest("a cat"), shipped, IpAdapters("/nonexistent"), missing)  # no reference: fine
