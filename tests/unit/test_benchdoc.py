"""``hack/benchdoc.write_section``: each benchmark rewrites its own section of docs/benchmarks.md only."""

from __future__ import annotations

from pathlib import Path

from hack.benchdoc import write_section

DOC = "# Benchmarks\n\nintro\n\n## A\n\nold a\n\n## B\n\nb stays\n"


def test_a_section_is_replaced_and_the_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    write_section("## A", "## A\n\nnew a\n| x |", path)
    assert path.read_text() == "# Benchmarks\n\nintro\n\n## A\n\nnew a\n| x |\n\n## B\n\nb stays\n"


def test_the_last_section_is_replaced_and_a_missing_one_appended(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    write_section("## B", "## B\n\nnew b\n\n\n", path)
    write_section("## C", "## C\n\nc\n", path)
    assert path.read_text() == "# Benchmarks\n\nintro\n\n## A\n\nold a\n\n## B\n\nnew b\n\n## C\n\nc\n"


def test_rewriting_a_section_with_its_own_text_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    write_section("## A", "## A\n\nold a\n", path)
    assert path.read_text() == DOC
