"""`import generation` stays light: the bot and its tests import it without loading torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.system(reason="a fresh interpreter")
def test_importing_generation_loads_no_torch_diffusers_or_transformers() -> None:
    probe = (
        "import sys, generation\n"
        "generation.GenerationRequest('a red circle'); generation.parse_prompt_flags('a --seed 1')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'transformers'}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
