"""The README's CLI command, run as a member would with its output in a file: the bot's thread default, no
import warnings, and no step counter run together on one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generation.console import step_printer
from generation.cpu_threads import default_cpu_threads

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.system(reason="a fresh interpreter: import warnings and the thread default of a new process")
def test_the_readme_command_prints_clean_lines_and_uses_one_thread_for_the_shipped_model(tmp_path):
    output = tmp_path / "out.png"
    environment = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "CPU_THREADS")}
    environment["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-m", "generation", "a red circle on a blue background", "--seed", "7",
                           "--steps", "2", "-o", str(output)], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{output} seed=7"]
    errors = done.stderr.splitlines()
    assert len(errors) == 1, done.stderr  # the summary line only: no warnings, no step counter
    assert "torchvision" not in done.stderr and "\r" not in done.stderr and "step 1/2" not in done.stderr
    assert errors[0].startswith("64x64, 2 steps, DPM++ 2M") and "on cpu, 1 thread" in errors[0], errors[0]
    assert output.is_file()


def test_the_thread_default_is_one_for_the_shipped_model_only():
    assert default_cpu_threads(["tinyshapes"]) == 1
    assert default_cpu_threads(["tinyshapes", "sdxl"]) is None and default_cpu_threads([]) is None


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty, self.written = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.written += text
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_steps_are_redrawn_on_a_terminal_and_left_out_of_files(tty):
    from generation import Progress

    stream = _Terminal(tty)
    show = step_printer(stream)
    if not tty:
        assert show is None
        return
    assert show is not None
    show(Progress(step=1, total=2))
    show(Progress(step=2, total=2))
    assert stream.written == "\rstep 1/2\rstep 2/2"
