"""What is special about a model is declared in its entry (generation.models.Capabilities), never
recognised by its name: the shipped model's describer, blend prompt and CPU thread default."""

from __future__ import annotations

import PIL.Image
import PIL.ImageDraw
import pytest

from generation.describe import Captioner, blend_prompt, check_describer, describe
from generation.cpu_threads import configured_cpu_threads, default_cpu_threads
from generation.models import BUILTIN_MODELS, TINYSHAPES_DIR, Capabilities, ModelSource, ModelSpec
from generation.models_file import ModelConfigError, load_model_specs
from generation.request import RequestError
from generation.shape_reading import PALETTE, SHAPES
from generation.vocabulary import load_vocabulary


def picture(shape: str, colour: str, background: str) -> PIL.Image.Image:
    image = PIL.Image.new("RGB", (64, 64), PALETTE[background])
    draw = PIL.ImageDraw.Draw(image)
    box = (16, 16, 48, 48)
    if shape == "circle":
        draw.ellipse(box, fill=PALETTE[colour])
    elif shape == "square":
        draw.rectangle(box, fill=PALETTE[colour])
    else:
        draw.polygon([(32, 16), (16, 48), (48, 48)], fill=PALETTE[colour])
    return image


def test_the_shipped_model_declares_its_capabilities_and_a_bare_source_none():
    assert BUILTIN_MODELS["tinyshapes"].capabilities() == Capabilities(describer="shapes", blend_prompt=True,
                                                                       cpu_threads=1)
    assert ModelSource("sdxl", "stabilityai/stable-diffusion-xl-base-1.0").capabilities() == Capabilities()


def test_the_describer_reads_only_words_the_shipped_model_declares():
    vocabulary = load_vocabulary(TINYSHAPES_DIR)
    assert vocabulary is not None
    assert set(vocabulary.colours) == set(PALETTE) and set(vocabulary.shapes) == set(SHAPES)


def test_any_model_declaring_the_shapes_describer_gets_it_whatever_its_name(tmp_path):
    renamed = ModelSpec("my-shapes", str(TINYSHAPES_DIR), describer="shapes", blend_prompt=True)
    prompts = describe(picture("square", "red", "blue"), renamed)
    assert prompts[0] == "a red square on a blue background" and len(prompts) == 4
    assert describe(picture("circle", "orange", "white"), "tinyshapes")[0] == "an orange circle on a white background"
    mixed = blend_prompt(renamed, [picture("circle", "red", "white"), picture("square", "blue", "white")])
    assert mixed == "a red circle on a blue background"


def test_a_model_without_a_describer_needs_a_captioner():
    plain = ModelSource("sdxl", "stabilityai/stable-diffusion-xl-base-1.0")
    with pytest.raises(RequestError, match="needs a captioning model for sdxl"):
        check_describer(plain, None)
    check_describer(plain, Captioner("some/captioner"))  # declared by the operator: fine (loaded on first use)
    assert blend_prompt(plain, [picture("circle", "red", "white")]) is None  # others blend unconditionally


def test_cpu_threads_follow_what_every_configured_model_declares():
    tiny = BUILTIN_MODELS["tinyshapes"]
    assert default_cpu_threads([tiny]) == 1
    assert default_cpu_threads([tiny, ModelSource("x", "/models/x.safetensors")]) is None
    assert default_cpu_threads([ModelSpec("y", "/models/y", cpu_threads=4), tiny]) == 1


def test_a_models_file_declares_capabilities_and_checks_them(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(f'[models.shapes2]\npath = "{TINYSHAPES_DIR}"\ndescriber = "shapes"\nblend_prompt = true\n'
                      'cpu_threads = 2\n\n[models.tinyshapes]\nsteps = 10\n')
    specs = load_model_specs(models)
    assert specs["shapes2"].capabilities() == Capabilities("shapes", True, 2)
    assert specs["tinyshapes"].capabilities() == BUILTIN_MODELS["tinyshapes"].capabilities()  # kept when overridden
    models.write_text(f'[models.shapes2]\npath = "{TINYSHAPES_DIR}"\ndescriber = "pixels"\n')
    with pytest.raises(ModelConfigError, match="describer must be one of shapes, got 'pixels'"):
        load_model_specs(models)
    models.write_text(f'[models.shapes2]\npath = "{TINYSHAPES_DIR}"\ncpu_threads = true\n')
    with pytest.raises(ModelConfigError, match="cpu_threads must be int"):
        load_model_specs(models)


@pytest.mark.parametrize("key", ["sd", "sdxl", "sd3", "flux"])
def test_a_family_says_whether_its_img2img_pipeline_takes_a_size(key):
    import inspect

    import diffusers

    from generation.families import FAMILIES

    family = FAMILIES[key]
    parameters = inspect.signature(getattr(diffusers, family.pipelines[1]).__call__).parameters
    assert family.img2img_takes_size == ({"width", "height"} <= set(parameters))


def test_a_models_file_entry_declares_its_threads_and_a_broken_file_leaves_torchs_default(tmp_path):
    models_file = tmp_path / "models.toml"
    models_file.write_text('[models.tinyshapes]\n\n[models.sd]\npath = "/models/sd"\ncpu_threads = 4\n')
    assert configured_cpu_threads(["sd"], models_file) == 4
    assert configured_cpu_threads(["tinyshapes", "sd"], models_file) == 1  # the fewest declared
    assert configured_cpu_threads(["sd", "/models/other"], models_file) is None  # one declares nothing
    assert configured_cpu_threads(["tinyshapes"], None) == 1  # no models file: the built-in entry
    models_file.write_text("[models.sd]\ncpu_threads = 0\n")
    assert configured_cpu_threads(["sd"], models_file) is None  # the app reports the file's problem
