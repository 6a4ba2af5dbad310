"""LoRAs (<lora:name:weight>, peft) and A1111 prompt weights ((word:1.3), compel) on the tiny families."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from gen_helpers import fast_request

from generation import RequestError
from generation.loras import addnet_hash
from generation.metadata import a1111_parameters
from generation.prompts import lora_tags, parse_attention, plain_text, split_prompt, strip_lora_tags


def make_lora(pipeline_folder, out_folder, name, denoiser):
    """A tiny LoRA made with peft: random (non-zero) B matrices, so it changes the picture."""
    import torch
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    pipe = AutoPipelineForText2Image.from_pretrained(pipeline_folder)
    module = getattr(pipe, denoiser)
    module.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                  init_lora_weights=False))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(module))
    type(pipe).save_lora_weights(out_folder, weight_name=f"{name}.safetensors", **{f"{denoiser}_lora_layers": layers})
    return out_folder / f"{name}.safetensors"


@pytest.fixture(scope="module")
def lora_dir(tiny_dirs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    make_lora(tiny_dirs["sdxl"], folder, "tiny-style", "unet")
    make_lora(tiny_dirs["flux"], folder, "flux.style", "transformer")
    return folder


@pytest.fixture(scope="module")
def lora_renderer(tiny_specs, lora_dir):
    from generation.renderer import Renderer

    specs = list(tiny_specs.values())
    return Renderer(specs[0], extra_models=tuple(specs[1:]), device="cpu", cpu_threads=1, lora_dir=lora_dir)


def sdxl(prompt, **changes):
    return fast_request(prompt, model="sdxl", sampler="Euler", seed=4, **changes)


def pixels(result):
    return np.asarray(result.images[0].image, dtype=np.int16)


# -- syntax --


def test_lora_tags_are_read_and_stripped():
    prompt = "a red circle <lora:paper-cut:0.7>, <LORA:ink> on blue"
    assert lora_tags(prompt) == [type(lora_tags("<lora:a>")[0])("paper-cut", 0.7),
                                 type(lora_tags("<lora:a>")[0])("ink", 1.0)]
    assert strip_lora_tags(prompt) == "a red circle , on blue"
    assert strip_lora_tags("a  red circle,") == "a  red circle,"  # untouched without tags
    with pytest.raises(RequestError, match="<lora:> is not a LoRA tag; write <lora:name> or <lora:name:0.8>."):
        split_prompt("a cat <lora:>")


@pytest.mark.parametrize(
    "text, chunks",
    [
        ("a red circle", [("a red circle", 1.0)]),
        ("a (red:1.3) circle", [("a ", 1.0), ("red", 1.3), (" circle", 1.0)]),
        ("(red)", [("red", 1.1)]),
        ("[red]", [("red", pytest.approx(1 / 1.1))]),
        ("((red))", [("red", pytest.approx(1.21))]),
        ("(red:0.5) [blue:3]", [("red", 0.5), (" ", 1.0), ("blue:3", pytest.approx(1 / 1.1))]),
        (r"a \(cat\)", [("a (cat)", 1.0)]),
        ("photo: a cat", [("photo: a cat", 1.0)]),
    ],
)
def test_attention_weights_as_a1111_parses_them(text, chunks):
    assert parse_attention(text) == chunks
    assert plain_text(text) == "".join(chunk for chunk, _ in chunks)


# -- LoRAs --


def test_a_lora_changes_the_picture_and_leaves_no_trace(lora_renderer):
    base = lora_renderer.render(sdxl("a red circle"))
    styled = lora_renderer.render(sdxl("a red circle <lora:tiny-style:1>"))
    half = lora_renderer.render(sdxl("a red circle <lora:tiny-style:0.5>"))
    assert lora_renderer.loaded.adapters == {"tiny-style": "tiny_style"}
    again = lora_renderer.render(sdxl("a red circle"))
    assert lora_renderer.loaded.adapters == {}
    assert np.abs(pixels(styled) - pixels(base)).mean() > 0.5
    assert not np.array_equal(pixels(half), pixels(styled))
    assert np.array_equal(pixels(again), pixels(base))  # unloaded: the exact base weights again
    assert np.array_equal(pixels(lora_renderer.render(sdxl("a red circle <lora:tiny-style:1>"))), pixels(styled))


def test_a_lora_is_recorded_with_a1111s_hash(lora_renderer, lora_dir):
    digest = addnet_hash(lora_dir / "tiny-style.safetensors")[:12]
    assert lora_renderer.lora_hashes("a cat <lora:tiny-style:0.8>") == {"tiny-style": digest}
    assert lora_renderer.lora_names() == ["flux.style", "tiny-style"]
    text = a1111_parameters({"prompt": "a cat <lora:tiny-style:0.8>", "num_inference_steps": 4}, seed=1, width=64,
                            height=64, lora_hashes={"tiny-style": digest})
    assert text.endswith(f'Lora hashes: "tiny-style: {digest}"')


def test_a_lora_for_another_family_or_unknown_is_refused_before_queueing(lora_renderer):
    with pytest.raises(RequestError) as error:
        lora_renderer.check_request(sdxl("a cat <lora:flux.style:1>"))
    assert str(error.value) == (
        "The LoRA 'flux.style' does not fit tiny sdxl (SDXL): it is made for a transformer model (Flux), "
        "this is a UNet model."
    )
    with pytest.raises(RequestError, match=r"does not fit tiny flux \(Flux.1\): it is made for a UNet model"):
        lora_renderer.check_request(fast_request("a cat <lora:tiny-style>", model="flux", sampler="Euler"))
    with pytest.raises(RequestError, match=r"does not fit tinyshapes .*: its down_blocks.1 layers are 64 wide, the model's 96"):
        lora_renderer.check_request(fast_request("a cat <lora:tiny-style>"))
    with pytest.raises(RequestError) as error:
        lora_renderer.check_request(sdxl("a cat <lora:nope>"))
    assert str(error.value) == "Unknown LoRA 'nope'. Available LoRAs: flux.style, tiny-style."


def test_a_flux_lora_renders_on_flux(lora_renderer):
    request = fast_request(model="flux", sampler="Euler", seed=2)
    base = lora_renderer.render(request)
    styled = lora_renderer.render(request.replace(prompt=request.prompt + " <lora:flux.style:1>"))
    assert not np.array_equal(pixels(base), pixels(styled))


def test_no_loras_configured_is_a_clear_refusal(family_renderer):
    with pytest.raises(RequestError, match=r"asks for the LoRA 'x', but no LoRAs are installed \(LORA_DIR is not set\)"):
        family_renderer.check_request(fast_request("a cat <lora:x:0.5>"))


def test_the_cli_records_lora_hashes_in_the_png(tmp_path, lora_dir, tiny_dirs):
    from generation.__main__ import main

    output = tmp_path / "lora.png"
    args = ["a red circle <lora:tiny-style:0.8>", "--model", str(tiny_dirs["sdxl"]), "--lora-dir", str(lora_dir),
            "--steps", "2", "--seed", "1", "--width", "64", "--height", "64", "-o", str(output), "--threads", "1"]
    assert main(args) == 0
    digest = addnet_hash(lora_dir / "tiny-style.safetensors")[:12]
    assert PIL.Image.open(output).text["parameters"].endswith(f'Lora hashes: "tiny-style: {digest}"')


# -- prompt weights --


@pytest.mark.parametrize("model, sampler", [("sdxl", "Euler"), ("flux", "Euler"), ("tinyshapes", "DPM++ 2M")])
def test_prompt_weights_change_the_picture_reproducibly(family_renderer, model, sampler):
    plain = fast_request("a red circle", model=model, sampler=sampler, seed=6)
    weighted = plain.replace(prompt="a (red:1.6) circle")
    first, second = family_renderer.render(weighted), family_renderer.render(weighted)
    assert np.array_equal(pixels(first), pixels(second))
    assert not np.array_equal(pixels(first), pixels(family_renderer.render(plain)))
    negative = family_renderer.render(weighted.replace(negative_prompt="[blue]"))
    assert negative.images[0].image.size == (64, 64)


def test_escaped_brackets_are_plain_text_without_compel(family_renderer):
    escaped = family_renderer.render(fast_request(r"a \(red\) circle", model="sd3", sampler="Euler", seed=3))
    literal = family_renderer.render(fast_request("a (red) circle", model="sdxl", sampler="Euler", seed=3))
    assert escaped.images[0].image.size == literal.images[0].image.size == (64, 64)


def test_sd3_refuses_prompt_weights_with_a_clear_message(family_renderer):
    with pytest.raises(RequestError) as error:
        family_renderer.check_request(fast_request("a (red:1.3) circle", model="sd3", sampler="Euler"))
    assert str(error.value) == (
        "Prompt weights like (word:1.3) or [word] are not available for tiny sd3 (SD3); remove the brackets, "
        "or write \\( and \\) for literal brackets."
    )


async def test_prepare_refuses_a_lora_that_does_not_fit_before_queueing(lora_renderer):
    from generation import GenerationService, Limits

    service = GenerationService(lora_renderer, Limits(models=("tinyshapes", "sdxl", "sd3", "flux")))
    with pytest.raises(RequestError, match="does not fit tiny sdxl"):
        service.prepare(sdxl("a cat <lora:flux.style:0.8>"))
    long_tags = "a cat " + " ".join(f"<lora:tiny-style:{i / 10}>" for i in range(20))
    assert service.prepare(sdxl(long_tags)).prompt == long_tags  # tags are not counted as prompt tokens
