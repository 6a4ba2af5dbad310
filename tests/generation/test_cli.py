"""`python -m generation` renders without Discord and prints the seeds needed to render again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from generation.__main__ import main
from generation.batching import BATCH_TOLERANCE_MAX, BATCH_TOLERANCE_MEAN
from generation.metadata import a1111_parameters

REPO = Path(__file__).resolve().parents[2]

PROMPT = "a red circle on a blue background"


def test_count_2_writes_numbered_files_and_prints_reproducible_seeds(tmp_path, capsys, tinyshapes_dir):
    common = ["--steps", "4", "--threads", "1", "--sampler", "Euler a", "--model", str(tinyshapes_dir)]
    assert main([PROMPT, "--seed", "7", "--count", "2", "-o", str(tmp_path / "out.png"), *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{tmp_path / 'out-1.png'} seed=7", f"{tmp_path / 'out-2.png'} seed=8"]

    assert main([PROMPT, "--seed", "8", "-o", str(tmp_path / "again.png"), *common]) == 0
    # the two images shared one pipeline call (generation.batching): alone, the second differs by rounding only
    second = np.asarray(PIL.Image.open(tmp_path / "out-2.png"), dtype=np.int16)
    difference = np.abs(second - np.asarray(PIL.Image.open(tmp_path / "again.png"), dtype=np.int16))
    assert difference.max() <= BATCH_TOLERANCE_MAX and difference.mean() <= BATCH_TOLERANCE_MEAN


def test_inline_flags_and_errors(tmp_path, capsys, tinyshapes_dir):
    output = tmp_path / "wide.png"
    common = ["--steps", "2", "--threads", "1", "--model", str(tinyshapes_dir)]
    assert main(["a square --ar 2:1 --seed 3", "-o", str(output), *common]) == 0
    assert capsys.readouterr().out.strip() == f"{output} seed=3"
    assert PIL.Image.open(output).size == (88, 48)

    assert main(["a square", "--cfg", "99", "-o", str(tmp_path / "bad.png")]) == 2
    message = "error: guidance must be a number from 0 to 30, got 99.0."
    assert capsys.readouterr().err.strip().endswith(message)
    assert not (tmp_path / "bad.png").exists()


def test_img2img_and_variation_fields_are_flags_too(tmp_path, capsys, tinyshapes_dir):
    init = tmp_path / "init.png"
    PIL.Image.new("RGB", (64, 64), (200, 30, 30)).save(init)
    common = ["--steps", "4", "--threads", "1", "--model", str(tinyshapes_dir), "--sampler", "Euler"]
    kept = tmp_path / "kept.png"
    edit = ["--init-image", str(init), "--strength", "0", "--width", "64", "--height", "64", "--cfg", "6.5"]
    assert main(["a blue square", "--negative-prompt", "green", "--seed", "4", *edit, "-o", str(kept), *common]) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(kept)), np.asarray(PIL.Image.open(init)))

    varied = tmp_path / "varied.png"
    variation = ["--variation-seed", "5", "--variation-strength", "0.15", "--count", "2"]
    assert main(["a blue square", "--seed", "4", *variation, "-o", str(varied), *common]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"{tmp_path / 'varied-1.png'} seed=4 variation_seed=5 variation_strength=0.15",
        f"{tmp_path / 'varied-2.png'} seed=4 variation_seed=6 variation_strength=0.15",
    ]


@pytest.mark.parametrize("family, sampler", [("sdxl", "DPM++ 2M Karras"), ("sd3", "Euler"), ("flux", "Euler")])
def test_each_family_renders_with_its_default_sampler(tmp_path, capsys, tiny_dirs, family, sampler):
    common = ["--model", str(tiny_dirs[family]), "--width", "64", "--height", "64", "--steps", "4", "--threads", "1"]
    outputs = {}
    for name, seed in (("first", "3"), ("again", "3"), ("other", "4")):
        outputs[name] = tmp_path / f"{name}.png"
        assert main(["a red circle", "--seed", seed, "-o", str(outputs[name]), *common]) == 0
    first, again, other = (np.asarray(PIL.Image.open(outputs[name])) for name in ("first", "again", "other"))
    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    parameters = PIL.Image.open(outputs["first"]).text["parameters"]
    assert parameters.startswith("a red circle\nSteps: 4, Sampler: " + sampler + ", CFG scale: ")
    assert f"Seed: 3, Size: 64x64, Model: {tiny_dirs[family]}" in parameters
    assert f"({ {'sdxl': 'SDXL', 'sd3': 'SD3', 'flux': 'Flux.1'}[family] })" in capsys.readouterr().err


def test_the_png_carries_the_same_a1111_parameters_as_the_bot(tmp_path, tinyshapes_dir):
    output = tmp_path / "meta.png"
    args = ["a red circle", "--no", "blue", "--seed", "5", "--steps", "3", "--cfg", "6", "--sampler", "Euler a"]
    assert main([*args, "--threads", "1", "--model", str(tinyshapes_dir), "-o", str(output)]) == 0
    expected = a1111_parameters(
        {"prompt": "a red circle", "negative_prompt": "blue", "num_inference_steps": 3, "sampler": "Euler a",
         "guidance_scale": 6.0, "model": str(tinyshapes_dir)},
        seed=5, width=64, height=64,
    )
    assert PIL.Image.open(output).text["parameters"] == expected


def run_cli_without_torch(*args: str) -> tuple[int, str, bool]:
    """Run the CLI in a fresh interpreter; report its exit code, stderr and whether torch got imported."""
    probe = (
        "import sys\nfrom generation.__main__ import main\nrc = main(sys.argv[1:])\n"
        "print('torch' in sys.modules, file=sys.stderr)\nsys.exit(rc)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO, capture_output=True, text=True,
                            env=env, timeout=60)
    *lines, imported = result.stderr.strip().splitlines()
    return result.returncode, "\n".join(lines), imported == "True"


@pytest.mark.system(reason="fresh interpreters: the CLI before torch loads")
def test_mistakes_are_reported_in_one_line_before_torch_loads(tmp_path):
    code, error, torch_loaded = run_cli_without_torch("a cat", "--init-image", "/nonexistent.png")
    assert (code, error, torch_loaded) == (2, "error: --init-image /nonexistent.png: no such file.", False)

    code, error, torch_loaded = run_cli_without_torch("a cat", "--model", "nosuchmodel")
    assert (code, error, torch_loaded) == (2, "error: Model 'nosuchmodel': no such file or folder: nosuchmodel", False)

    code, error, torch_loaded = run_cli_without_torch("a cat", "--model", "someone/not-downloaded")
    assert code == 2 and not torch_loaded
    assert error == (
        "error: Model 'someone/not-downloaded': someone/not-downloaded looks like a Hugging Face hub id, but "
        "HF_HUB_OFFLINE is set and it is not in the local cache; download it first or give a local folder."
    )

    code, error, torch_loaded = run_cli_without_torch("a cat", "--steps", "0")
    assert (code, error, torch_loaded) == (2, "error: steps must be a whole number from 1 to 150, got 0.", False)


def test_a_models_file_gives_names_and_defaults(tmp_path, capsys, tiny_dirs):
    models = tmp_path / "models.toml"
    models.write_text(
        f'''[models.fluxy]
display_name = "Tiny Flux"
path = "{tiny_dirs['flux']}"
steps = 3
guidance = 2.5
size = 64
'''
    )
    output = tmp_path / "fluxy.png"
    assert main(["a red circle", "--models-file", str(models), "--model", "fluxy", "--seed", "1", "-o", str(output),
                 "--threads", "1"]) == 0
    parameters = PIL.Image.open(output).text["parameters"]
    assert "Steps: 3, Sampler: Euler, CFG scale: 2.5, Seed: 1, Size: 64x64, Model: fluxy" in parameters


@pytest.mark.system(reason="a fresh interpreter with its own Hugging Face cache")
def test_a_cached_hub_id_renders_offline(tmp_path, tiny_dirs):
    """A hub id resolves through the local Hugging Face cache when HF_HUB_OFFLINE=1 (no network touched)."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-sdxl"
    shutil.copytree(tiny_dirs["sdxl"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    output = tmp_path / "hub.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    args = ["a red circle", "--model", "tiny-org/tiny-sdxl", "--seed", "3", "--steps", "2", "--threads", "1",
            "--width", "64", "--height", "64", "-o", str(output)]
    result = subprocess.run([sys.executable, "-m", "generation", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"{output} seed=3"
    assert "(SDXL)" in result.stderr
    assert "Model: tiny-org/tiny-sdxl" in PIL.Image.open(output).text["parameters"]
