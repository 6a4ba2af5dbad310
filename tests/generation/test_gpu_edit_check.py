"""benchmarks/gpu_edit_check.py at toy scale on the CPU: the code the GPU run uses, so that run works first time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_edit_check.py"


def test_the_edit_check_builds_adopts_and_renders_each_family_at_toy_scale(capsys):
    spec = importlib.util.spec_from_file_location("gpu_edit_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Qwen-Image-Edit Plus at toy scale still encodes its picture at 1 MP (~1 min on a CPU): the GPU run covers it.
    rows = module.main(["--tiny", "--device", "cpu", "--threads", "1", "--steps", "2", "--families", "klein,kontext"])
    assert [row["pipeline"] for row in rows] == ["Flux2KleinPipeline", "FluxKontextPipeline"]
    for row in rows:
        assert row["output"] == "64x64" and row["s_per_step"] > 0
        assert row["nan"] == {"denoiser": False, "vae_decoder": False}
    assert "no NaN/inf" in capsys.readouterr().out
