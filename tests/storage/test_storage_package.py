"""storage stands alone: importing it pulls in neither the render stack nor the Discord layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.system(reason="a fresh interpreter")
def test_storage_imports_no_generation_torch_or_bot() -> None:
    probe = (
        "import sys, storage, benchmarks.storage_bench\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'generation', 'bot', 'discord'}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
