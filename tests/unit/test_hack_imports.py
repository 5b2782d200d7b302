"""``hack/`` never imports ``tests/``: the demo and the benchmarks must run from a checkout without pytest's
fixtures, and test code may change shape at any time. Shared test-bed code lives in ``hack/loopback/``
(and ``hack/realnode/``); tests import from there, never the other way round.

The check reads every Python file under ``hack/`` with :mod:`ast` (nothing is imported or run), so
a string or a comment that mentions ``tests`` does not count, and an import inside a function does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = "tests"
DYNAMIC_IMPORTS = {"import_module", "__import__"}


def _names_tests(module: str | None) -> bool:
    return module is not None and (module == FORBIDDEN or module.startswith(f"{FORBIDDEN}."))


def imports_of_tests(source: str, filename: str = "<source>") -> list[str]:
    """``line: statement`` for every import of the ``tests`` package in ``source``.

    Counts ``import tests...``, ``from tests... import``, and ``importlib.import_module("tests...")``
    or ``__import__("tests...")`` with a literal name; relative imports never reach ``tests``.
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if _names_tests(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _names_tests(node.module):
            found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0].value
            if name in DYNAMIC_IMPORTS and isinstance(arg, str) and _names_tests(arg):
                found.append(f"{node.lineno}: {name}({arg!r})")
    return found


def test_no_file_under_hack_imports_tests() -> None:
    files = sorted((REPO / "hack").rglob("*.py"))
    assert files, "no Python files under hack/: is REPO right?"
    offenders = {
        str(path.relative_to(REPO)): hits
        for path in files
        if (hits := imports_of_tests(path.read_text(encoding="utf-8"), str(path)))
    }
    assert not offenders, (
        f"hack/ imports tests/ (move the shared code to hack/loopback/ and import it from there): {offenders}"
    )


@pytest.mark.parametrize(
    "source",
    [
        "from tests.conftest import Cluster",
        "import tests.e2e.harness.world as world",
        "import os, tests",
        "def f():\n    from tests import conftest",
        "import importlib\nimportlib.import_module('tests.conftest')",
        "__import__('tests')",
    ],
)
def test_the_check_finds_imports_of_tests(source: str) -> None:
    assert imports_of_tests(source)


@pytest.mark.parametrize(
    "source",
    [
        "from hack.loopback.cluster import Cluster",
        "import testsuite",
        "from .tests import x",
        "'''from tests import x'''",
        "# import tests",
        "path = 'tests/e2e'",
    ],
)
def test_the_check_ignores_what_is_not_an_import_of_tests(source: str) -> None:
    assert imports_of_tests(source) == []
