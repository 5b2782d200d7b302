"""Test files outside a package must have unique basenames.

pytest's default ``prepend`` import mode imports a test file in a directory without ``__init__.py``
under its bare basename, so ``tests/unit/test_contract.py`` and ``tests/e2e/test_contract.py`` are
both ``test_contract``: collection stops with "import file mismatch" and the whole of ``make test``
fails (CI did, after 99 s). This check names the clash before the collector does.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    """The name pytest imports ``path`` under: dotted up through the enclosing packages."""
    parts = [path.stem]
    parent = path.parent
    while (parent / "__init__.py").exists():
        parts.insert(0, parent.name)
        parent = parent.parent
    return ".".join(parts)


def test_test_modules_import_under_distinct_names() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS.rglob("test_*.py")):
        if ".venv" not in path.parts:
            by_name[_module_name(path)].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"rename one of each (pytest imports them under the same name): {clashes}"
