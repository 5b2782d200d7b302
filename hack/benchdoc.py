"""Replace one ``## `` section of docs/benchmarks.md, leaving every other section as it is.

Each ``make bench-*`` owns one section and rewrites only that, so benchmarks run at different times
(and by different people) keep each other's figures. Sections are separated by one blank line.
"""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "docs/benchmarks.md"


def write_section(heading: str, text: str, path: Path = BENCHMARKS) -> None:
    """Put ``text`` (which starts with ``heading``) in place of the section under ``heading``, or
    append it when the document has no such section yet."""
    body = text.strip("\n") + "\n"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", flags=re.MULTILINE | re.DOTALL)
    found = pattern.search(doc) is not None
    doc = pattern.sub(lambda _: body + "\n", doc, count=1) if found else doc.rstrip("\n") + "\n\n" + body
    path.write_text(doc.rstrip("\n") + "\n")
