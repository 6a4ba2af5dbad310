"""No import cycles inside generation, counting every import: module level, inside functions, and under
TYPE_CHECKING (import-linter's contracts may skip the last; this does not)."""

from __future__ import annotations

import grimp
import pytest


def import_cycles(package: str) -> list[list[str]]:
    """The strongly connected groups of more than one module in `package`'s import graph (Tarjan)."""
    graph = grimp.build_graph(package, include_external_packages=False, exclude_type_checking_imports=False)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


@pytest.mark.parametrize("package", ["generation", "storage"])
def test_a_product_package_has_no_import_cycle(package):
    assert import_cycles(package) == []


def test_the_cycle_finder_sees_function_level_and_type_checking_imports(tmp_path, monkeypatch):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (package / "c.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic") == [["cyclic.a", "cyclic.b"]]
