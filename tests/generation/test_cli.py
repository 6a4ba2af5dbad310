"""`python -m generation` renders without Discord and prints the seeds needed to render again."""

from __future__ import annotations

import numpy as np
import PIL.Image

from generation.__main__ import main

PROMPT = "a red circle on a blue background"


def test_count_2_writes_numbered_files_and_prints_reproducible_seeds(tmp_path, capsys, tinyshapes_dir):
    common = ["--steps", "4", "--threads", "1", "--sampler", "Euler a", "--model", str(tinyshapes_dir)]
    assert main([PROMPT, "--seed", "7", "--count", "2", "-o", str(tmp_path / "out.png"), *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{tmp_path / 'out-1.png'} seed=7", f"{tmp_path / 'out-2.png'} seed=8"]

    assert main([PROMPT, "--seed", "8", "-o", str(tmp_path / "again.png"), *common]) == 0
    second = np.asarray(PIL.Image.open(tmp_path / "out-2.png"))
    assert np.array_equal(second, np.asarray(PIL.Image.open(tmp_path / "again.png")))


def test_inline_flags_and_errors(tmp_path, capsys, tinyshapes_dir):
    output = tmp_path / "wide.png"
    common = ["--steps", "2", "--threads", "1", "--model", str(tinyshapes_dir)]
    assert main(["a square --ar 2:1 --seed 3", "-o", str(output), *common]) == 0
    assert capsys.readouterr().out.strip() == f"{output} seed=3"
    assert PIL.Image.open(output).size == (88, 48)

    assert main(["a square", "--cfg", "99", "-o", str(tmp_path / "bad.png")]) == 2
    message = "error: guidance_scale (cfg) must be a number from 0 to 30, got 99.0."
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
