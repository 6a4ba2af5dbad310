"""Instruction-editing families (FLUX.1 Kontext, Qwen-Image-Edit/Plus, FLUX.2 [klein]) on tiny random-weight
pipelines written offline (tiny_edit_pipelines.py): through the CLI and the renderer."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

from generation import FAMILIES
from generation.__main__ import main
from generation.edit_families import KLEIN, KONTEXT, QWEN_EDIT, pictures_per_call
from generation.families import read_model_info
from generation.metadata import parse_a1111_parameters
from generation.models import ModelSource, ModelSpec
from generation.models_file import spec_from_mapping
from generation.request import GenerationRequest, RequestError

EDIT_MODELS = ("kontext", "qwen-edit", "klein")
STEPS = "2"


@pytest.fixture(scope="session")
def edit_dirs(tmp_path_factory):
    from tiny_edit_pipelines import EDIT_FAMILIES, write_tiny_edit_pipeline

    root = tmp_path_factory.mktemp("tiny-edit-pipelines")
    return {family: write_tiny_edit_pipeline(family, root / family) for family in EDIT_FAMILIES}


def picture(width: int = 96, height: int = 64) -> PIL.Image.Image:
    """Red left half, blue right half: an edit has something to change."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (200, 30, 30)
    pixels[:, width // 2:] = (30, 30, 200)
    return PIL.Image.fromarray(pixels)


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def png_bytes(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_families_are_declared_and_detected(edit_dirs):
    assert {"kontext", "qwen-edit", "klein"} <= set(FAMILIES)
    expected = {"kontext": KONTEXT, "klein": KLEIN, "qwen-edit": QWEN_EDIT, "qwen-edit-plus": QWEN_EDIT}
    for name, folder in edit_dirs.items():
        info = read_model_info(ModelSource(name, str(folder)))
        assert info.family is expected[name]
        assert info.family.edits_by_instruction
        assert info.native_size == 1024  # no sample size in their configs: the real models' 1 MP
    assert not FAMILIES["sd"].edits_by_instruction and not FAMILIES["flux"].edits_by_instruction
    assert KONTEXT.defaults(None) == {"num_inference_steps": 28, "guidance_scale": 2.5, "sampler": "Euler"}  # type: ignore[arg-type]
    assert KLEIN.default_steps == 4 and QWEN_EDIT.default_steps == 50
    plus = read_model_info(ModelSource("plus", str(edit_dirs["qwen-edit-plus"])))
    single = read_model_info(ModelSource("single", str(edit_dirs["qwen-edit"])))
    assert (pictures_per_call(plus), pictures_per_call(single)) == (3, 1)
    # A models file may force the family by its key, like the others.
    assert spec_from_mapping("k", {"path": str(edit_dirs["kontext"]), "family": "kontext"}).family == "kontext"


# Qwen-Image-Edit's pipeline encodes the picture at 1 MP whatever the output size: a long render (slow tier).
@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m == "qwen-edit" else m
                                   for m in EDIT_MODELS])
def test_cli_edit_keeps_the_size_and_the_renderer_renders_it_again(model, edit_dirs, tmp_path, capsys):
    """`python -m generation "make it blue" --model DIR --init-image in.png --seed 3 -o out.png`; the same seed
    through the renderer gives the same picture, another seed another one."""
    from generation.renderer import Renderer

    source = tmp_path / "in.png"
    picture().save(source)
    output = tmp_path / "out.png"
    common = ["--model", str(edit_dirs[model]), "--steps", STEPS, "--threads", "1"]
    assert main(["make it blue", "--init-image", str(source), "--seed", "3", "-o", str(output), *common]) == 0
    edited = PIL.Image.open(output)
    assert edited.size == (96, 64)  # an instruction edit keeps the picture's size
    assert np.abs(pixels(edited) - pixels(picture())).mean() > 1.0  # and changes it
    recorded = parse_a1111_parameters(edited.text["parameters"])
    assert recorded["Seed"] == "3" and recorded["Size"] == "96x64" and recorded["Prompt"] == "make it blue"

    renderer = Renderer(ModelSource(model, str(edit_dirs[model])), device="cpu", cpu_threads=1)
    info = renderer.model_info(model)
    request = GenerationRequest("make it blue", width=96, height=64, num_inference_steps=int(STEPS), seed=3,
                                guidance_scale=info.defaults()["guidance_scale"], sampler="Euler",
                                init_image=png_bytes(picture()), model=model)
    again = renderer.render(request).images[0]
    assert np.array_equal(pixels(again.image), pixels(edited))  # bit-exact from the record
    other = renderer.render(request.replace(seed=4)).images[0]
    assert np.abs(pixels(other.image) - pixels(edited)).mean() > 0.5
    assert renderer.batch_key(request) is None  # a list of pictures is references, never a batch
    two = renderer.render(request.replace(count=2))
    assert [image.seed for image in two.images] == [3, 4]
    assert np.array_equal(pixels(two.images[0].image), pixels(edited))
    assert np.array_equal(pixels(two.images[1].image), pixels(other.image))


def test_klein_also_draws_from_words_alone(edit_dirs):
    from generation.renderer import Renderer

    renderer = Renderer(ModelSource("klein", str(edit_dirs["klein"])), device="cpu", cpu_threads=1)
    request = GenerationRequest("a red circle", width=64, height=64, num_inference_steps=2, seed=5,
                                guidance_scale=1.0, sampler="Euler", model="klein")
    first, second = (renderer.render(request).images[0].image for _ in range(2))
    assert first.size == (64, 64) and np.array_equal(pixels(first), pixels(second))


def test_what_an_edit_model_cannot_do_is_refused_before_rendering(edit_dirs):
    kontext = read_model_info(ModelSource("kontext", str(edit_dirs["kontext"])))
    klein = read_model_info(ModelSource("klein", str(edit_dirs["klein"])))
    qwen = read_model_info(ModelSource("qwen", str(edit_dirs["qwen-edit"])))
    base = GenerationRequest("make it blue", width=96, height=64, sampler="Euler", seed=1, model="kontext")
    with_picture = base.replace(init_image=png_bytes(picture()))
    with pytest.raises(RequestError, match="edits a picture: attach one"):
        KONTEXT.check_request(base, kontext)
    KONTEXT.check_request(with_picture, kontext)  # fine
    with pytest.raises(RequestError, match="Variations are not available"):
        KONTEXT.check_request(base.replace(variation_seed=3, variation_strength=0.5), kontext)
    with pytest.raises(RequestError, match="edits by instruction, not by canvas"):
        KONTEXT.check_request(with_picture.replace(edit_mode="zoom", edit_factor=1.5), kontext)
    with pytest.raises(RequestError, match="does not take a negative prompt"):
        KLEIN.check_request(with_picture.replace(negative_prompt="red"), klein)
    with pytest.raises(RequestError, match="at least 64 pixels"):
        KLEIN.check_request(base.replace(init_image=png_bytes(picture(48, 48))), klein)
    with pytest.raises(RequestError, match="needs at least 2 steps"):
        QWEN_EDIT.check_request(with_picture.replace(num_inference_steps=1), qwen)
    with pytest.raises(RequestError, match="choose one of: Euler"):
        QWEN_EDIT.check_request(with_picture.replace(sampler="UniPC"), qwen)
    with pytest.raises(RequestError, match="Prompt weights"):
        KONTEXT.check_request(with_picture.replace(prompt="make it (blue:1.4)"), kontext)
    KLEIN.check_request(base, klein)  # klein also renders from words alone


def test_the_cli_refuses_an_edit_without_a_picture_in_one_line(edit_dirs, tmp_path, capsys):
    assert main(["make it blue", "--model", str(edit_dirs["kontext"]), "-o", str(tmp_path / "x.png")]) == 2
    assert "edits a picture: attach one" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_models_file_entry_names_an_edit_model(edit_dirs):
    spec = ModelSpec("kontext-dev", str(edit_dirs["kontext"]), display_name="Kontext", steps=2, guidance=2.5)
    info = read_model_info(spec)
    assert info.label == "Kontext" and info.family is KONTEXT


def test_the_cuda_speed_ups_leave_qwen_image_s_3d_vae_alone(edit_dirs):
    """channels_last is for 4D weights; Qwen-Image's VAE has Conv3d (5D) weights, which torch refuses."""
    import torch

    from generation.devices import speed_up
    from generation.edit_families import load_edit_pipeline

    source = ModelSource("qwen", str(edit_dirs["qwen-edit"]))
    pipe = load_edit_pipeline(source, read_model_info(source), None)
    # the CUDA branch only sets memory formats and slicing
    speed_up(pipe, QWEN_EDIT, torch.device("cuda"), offload="none", compile_denoiser=False)
    assert pipe.vae.use_slicing
