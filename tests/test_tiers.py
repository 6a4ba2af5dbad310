"""The test tiers are what the Makefile says: `make check` (in-process: no `system`, no `slow`) and `make test`
(every tier), with the markers declared once (pyproject) and every `system` test saying why it is one."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from tiers import POSTGRES_FIXTURES, ProcessGuard, ProcessRefused, mark_postgres_tests

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def recipe(target: str) -> str:
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert match, f"the Makefile has no {target} recipe"
    return match.group(1)


def selections(target: str) -> list[str]:
    """The `-m` expression of each pytest run in a Makefile recipe."""
    expressions = []
    for line in recipe(target).splitlines():
        words = shlex.split(line)
        if "pytest" in words:  # `-m pytest`, then the run's own `-m EXPRESSION`
            expressions += [words[i + 1] for i, word in enumerate(words) if word == "-m" and words[i + 1] != "pytest"]
    return expressions


def test_make_check_is_the_in_process_tier_and_make_test_runs_every_tier() -> None:
    assert selections("check") == ["not system and not slow"]
    assert sorted(selections("test")) == ["not system", "system"]  # together: every test, slow ones too


def test_markers_are_declared_once_in_pyproject_and_strictly() -> None:
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in options["addopts"].split()
    assert sorted(line.split(":")[0].split("(")[0] for line in options["markers"]) == ["bot", "slow", "system"]
    declaring = [path.name for path in TESTS.rglob("*.py")
                 if path != Path(__file__) and "addinivalue_line" in path.read_text()]
    assert declaring == []


def _is_system_mark(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "system" and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark")


def _system_marks(tree: ast.AST) -> list[ast.AST]:
    """Each use of pytest.mark.system: the call when it has arguments, else the bare attribute."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call) and _is_system_mark(node.func)}
    return [node for node in ast.walk(tree)
            if (isinstance(node, ast.Call) and id(node.func) in called) or (_is_system_mark(node) and id(node) not in called)]


def test_every_system_test_says_which_process_or_server_it_needs() -> None:
    unexplained = []
    count = 0
    for path in sorted(TESTS.rglob("*.py")):
        for mark in _system_marks(ast.parse(path.read_text())):
            count += 1
            reason = next((keyword.value for keyword in getattr(mark, "keywords", ()) if keyword.arg == "reason"), None)
            if not (isinstance(reason, ast.Constant) and isinstance(reason.value, str) and reason.value.strip()):
                unexplained.append(f"{path.relative_to(REPO)}:{mark.lineno}")
    assert count > 10  # the scan sees the marks
    assert unexplained == [], "pytest.mark.system(reason=...) says which process or server the test starts"


def test_a_test_outside_the_system_tier_cannot_start_a_process(process_guard: ProcessGuard) -> None:
    with pytest.raises(ProcessRefused):
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    async def start() -> None:
        await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")

    with pytest.raises(ProcessRefused):
        asyncio.run(start())
    with pytest.raises(ProcessRefused):
        os.system("true")
    assert len(process_guard.attempts) == 3
    process_guard.attempts.clear()  # refused as they should be: this test passes


class _Item:
    def __init__(self, *fixturenames: str) -> None:
        self.fixturenames = list(fixturenames)
        self.marks: list[pytest.MarkDecorator] = []

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark)


def test_a_test_on_the_postgresql_server_is_a_system_test_whether_or_not_it_says_so() -> None:
    items = [_Item(name, "tmp_path") for name in sorted(POSTGRES_FIXTURES)] + [_Item("tmp_path")]
    mark_postgres_tests(items)
    assert [[mark.name for mark in item.marks] for item in items] == [["system"], ["system"], []]
    assert all(mark.kwargs["reason"] for item in items for mark in item.marks)
