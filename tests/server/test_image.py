"""Static checks of the container recipe (no Docker engine here to build it)."""

from __future__ import annotations

import re
import tomllib

from .conftest import REPO

IMAGE = REPO / "server-image"


def _requirement_lines() -> list[str]:
    lines = (IMAGE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_match_the_server_extra() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    assert sorted(_requirement_lines()) == sorted(extra)


def test_dockerfile_is_slim_non_root_on_8080() -> None:
    text = (IMAGE / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2 and all("-slim" in s for s in stages), stages
    final = text[text.rindex("\nFROM ") :]
    assert "--only-binary=:all:" in text, "wheels only: no compiler in any stage"
    assert not re.search(r"apt-get install[^\n]*(gcc|build-essential|g\+\+)", final)
    assert re.search(r"^USER 10001", final, flags=re.MULTILINE)
    assert "EXPOSE 8080" in final and "MODELSERVER_PORT=8080" in final and "MODELSERVER_HOST=0.0.0.0" in final
    assert 'ENTRYPOINT ["python", "-m", "modelserver"]' in final
    assert "COPY modelserver" in text and "requirements.txt" in text
