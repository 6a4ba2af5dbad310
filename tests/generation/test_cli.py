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
