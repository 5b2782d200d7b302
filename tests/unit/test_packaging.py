"""The kind scripts and the operator image definition, checked without Docker.

The kind path cannot run here (no Docker engine), so what can be checked is checked: every script
parses, is shellcheck-clean, and the Dockerfile runs as the same non-root UID the chart enforces.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KIND_SCRIPTS = sorted((ROOT / "hack" / "kind").glob("*.sh"))


def test_kind_scripts_exist() -> None:
    assert {p.name for p in KIND_SCRIPTS} >= {"common.sh", "up.sh", "deploy.sh", "e2e.sh", "down.sh"}


@pytest.mark.parametrize("script", KIND_SCRIPTS, ids=lambda p: p.name)
def test_kind_script_parses(script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_kind_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    proc = subprocess.run(
        ["shellcheck", "-x", *map(str, KIND_SCRIPTS)], capture_output=True, text=True, cwd=ROOT,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout


def _final_stage(dockerfile: str) -> list[str]:
    lines = [line.strip() for line in dockerfile.splitlines()]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def test_operator_image_runs_as_the_charts_non_root_user() -> None:
    final = _final_stage((ROOT / "Dockerfile").read_text())
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root UID, so runAsNonRoot can verify it"
    values = yaml.safe_load((ROOT / "charts" / "modelrollout" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert any(line.startswith('ENTRYPOINT ["python", "-m", "modelrollout"]') for line in final)


def test_dockerignore_keeps_state_and_secrets_out_of_the_context() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".testenv", "tests"} <= ignored
    for needed in ("operator", "server-image", "pyproject.toml", "README.md"):
        assert needed not in ignored
