"""The rules that keep `make check` in-process (wired in tests/conftest.py, checked by tests/test_tiers.py):
tests on PostgreSQL are `system`, and a test outside `system` cannot start a process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from typing import Any, Protocol

import pytest

# A test using one of these runs on a PostgreSQL server: `system`, whether or not it says so.
POSTGRES_FIXTURES = frozenset({"postgres_url", "postgres_database"})
# Every way a test could start a process (subprocess and asyncio subprocesses go through Popen).
PROCESS_STARTERS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")


class Markable(Protocol):
    def add_marker(self, marker: pytest.MarkDecorator) -> None: ...


def mark_postgres_tests(items: Iterable[Markable]) -> None:
    for item in items:
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.system(reason="a PostgreSQL server"))


class ProcessRefused(AssertionError):
    """A test outside the `system` tier tried to start a process."""


class ProcessGuard:
    """Refuses every process a test outside `system` starts, and remembers the attempts (the test fails at
    its teardown even where the code under test swallowed the refusal)."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.attempts: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(subprocess.Popen, "_execute_child", self._refuse("Popen"))
        for name in PROCESS_STARTERS:
            if hasattr(os, name):
                monkeypatch.setattr(os, name, self._refuse(f"os.{name}"))

    def _refuse(self, what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            command = args[1] if what == "Popen" else args[:1]  # Popen._execute_child(self, args, ...)
            self.attempts.append(f"{what} {command}")
            raise ProcessRefused(f"{self.test} starts a process ({self.attempts[-1]}): "
                                 "mark it @pytest.mark.system(reason=...) or keep it in-process")
        return refused
