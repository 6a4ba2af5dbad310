"""The READMEs' command examples that run offline and cheaply, taken from the README text itself.

A README that names a `python -m …` module or a `python path.py` script that no longer exists, no longer
takes `--help`, or does not take a flag an example passes it fails here; the few examples with a promised outcome (the CLI render, `python -m bot`
without a token, the interpreter's accuracy table) are run and their outcome checked (`system`: subprocesses).
Every upper-case setting name the READMEs use must exist in bot/settings.py.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import PIL.Image
import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = ["README.md", "generation/README.md", "storage/README.md", "generation/tinyshapes/README.md",
           "evaluation/README.md"]
# `python -m module` or `python path.py`, then the rest of its line (a `\` continuation joined)
COMMAND = re.compile(r"python (?:-m ([A-Za-z_][\w.]*)|([\w/]+\.py))([^\n`#]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
# No argument parser (`--help` would start them for real; `bot` without a token is run below), or not ours.
NO_HELP = {"bot", "generation.worker", "playground", "pytest"}
# Upper-case names in the READMEs that are not settings: other programs' environment, make variables, constants.
NOT_SETTINGS = {"APPLICATION_ID", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "HF_HUB_OFFLINE",
                "TORCH_SPEC", "IMAGINE_TEST_POSTGRES_URL", "BATCH_TOLERANCE_MAX", "DYNAMIC_ITEMS", "TYPE_CHECKING",
                "RENDER_NOISE", "DISCORD_NOISE"}
CLI_EXAMPLE = re.compile(r'python -m generation "a red circle on a blue background" --seed 7 -o out\.png')


def readme_text() -> str:
    return "\n".join((REPO / name).read_text(encoding="utf-8") for name in READMES)


def named_commands() -> dict[str, set[str]]:
    """Every `python -m …`/`python ….py` the READMEs name, with the --flags their examples pass it."""
    flags: dict[str, set[str]] = {}
    for match in COMMAND.finditer(readme_text().replace("\\\n", " ")):
        flags.setdefault(match.group(1) or match.group(2), set()).update(FLAG.findall(match.group(3)))
    return flags


def child_env(tmp_path: Path) -> dict[str, str]:
    # The worktree's code first (the shared venv may hold an editable install of another checkout); a
    # cwd without .env, so a developer's token or settings change nothing.
    env = {key: value for key, value in os.environ.items() if key != "DISCORD_TOKEN"}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", DATA_DIR=str(tmp_path / "data"))
    return env


def run(args: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=child_env(tmp_path), capture_output=True,
                          text=True, timeout=timeout)


def help_commands() -> list[tuple[list[str], set[str]]]:
    """(`--help` command line, the flags the READMEs pass it) for every named command with an argument parser."""
    commands = []
    for name, flags in sorted(named_commands().items()):
        if name in NO_HELP:
            continue
        target = ["-m", name] if not name.endswith(".py") else [str(REPO / name)]
        commands.append(([*target, "--help"], flags))
    return commands


def test_every_setting_the_readmes_name_exists():
    from bot.settings import Settings

    settings = {name.upper() for name in Settings.model_fields}
    named = set(re.findall(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", readme_text()))
    assert named - settings - NOT_SETTINGS == set(), "the READMEs name settings bot/settings.py does not have"
    assert {"SHARE_RESULTS", "BATCH_IMAGES", "MAX_RENDER_ATTEMPTS"} <= named



def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("readme", READMES)
def test_every_link_to_a_section_finds_it(readme):
    text = (REPO / readme).read_text(encoding="utf-8")
    anchors = {heading_anchor(heading) for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links - anchors == set()


def test_the_readmes_name_the_tooling_commands():
    named = {" ".join(command[:-1]) for command, _ in help_commands()}
    # guards the extraction itself: an empty or truncated list would pass the --help test trivially
    for expected in ("-m benchmarks.storage_bench", "-m training.tinyshapes.evaluate", "-m playground.tour",
                     "-m generation.workers", "-m generation", f"{REPO}/benchmarks/queue_scale.py"):
        assert expected in named
    assert {"--unet-minutes", "--finetune-from"} <= named_commands()["training.tinyshapes.train"]


@pytest.mark.system(reason="the README's commands in processes")
def test_every_named_command_answers_help_with_the_flags_the_readmes_use(tmp_path):
    commands = help_commands()
    with ThreadPoolExecutor(max_workers=2) as pool:  # one per core
        results = list(pool.map(lambda command: run(command[0], tmp_path), commands))
    failures = []
    for (command, flags), result in zip(commands, results):
        if result.returncode != 0 or "usage:" not in result.stdout:
            failures.append(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()[-300:]}")
        elif unknown := sorted(flag for flag in flags if not re.search(rf"{flag}\b", result.stdout)):
            failures.append(f"{' '.join(command)}: the READMEs pass flags it does not take: {unknown}")
    assert not failures, "\n".join(failures)


@pytest.mark.system(reason="the README's commands in processes")
def test_the_cli_example_renders_the_shipped_model(tmp_path):
    example = CLI_EXAMPLE.search(readme_text())
    assert example is not None, "the README's `python -m generation` example changed"
    args = shlex.split(example.group(0))[1:]
    output = tmp_path / "out.png"
    args[args.index("out.png")] = str(output)
    result = run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{output} seed=7"
    with PIL.Image.open(output) as image:
        assert image.size == (64, 64)  # the shipped model's native size
        assert "Seed: 7" in image.info["parameters"]


@pytest.mark.system(reason="the README's commands in processes")
def test_bot_without_a_token_exits_2_with_one_line(tmp_path):
    assert "without a token it exits with status 2 and one line pointing to `make demo`" in readme_text()
    result = run(["-m", "bot"], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DISCORD_TOKEN" in lines[0] and "make demo" in lines[0]


@pytest.mark.system(reason="the README's commands in processes")
@pytest.mark.parametrize("readme", ["README.md", "evaluation/README.md"])
def test_the_interpreter_prints_the_readme_accuracy_table(tmp_path, readme):
    result = run(["-m", "evaluation.interpreter"], tmp_path)
    assert result.returncode == 0, result.stderr
    printed = {line.strip() for line in result.stdout.splitlines()}
    text = (REPO / readme).read_text(encoding="utf-8")
    table = text.split("| category | right | total | accuracy |", 1)[1].split("\n\n", 1)[0]
    rows = [line.strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 10 and rows[-1].startswith("| **overall** |")
    missing = [row for row in rows if row not in printed]
    assert not missing, f"{readme}'s table differs from what `python -m evaluation.interpreter` prints: {missing}"
