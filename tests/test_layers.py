"""The layering contract of pyproject.toml holds, and it catches a wrong arrow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contracts over the package under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_contracts():
    result = lint(REPO / "src")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "imported", "broken"),
    [
        # Evaluation reads trained runs through `permakey.runs`, never through training.
        ("evaluation/metrics.py", "permakey.training", "rooms are layered"),
        # Loading a trained run never imports training code.
        ("runs/folder.py", "permakey.training.loop", "rooms are layered"),
        # Data collection knows nothing of the wrappers (the circle issue 15 removed).
        ("data/policies.py", "permakey.envs", "rooms are layered"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(tmp_path, module, imported, broken):
    shutil.copytree(REPO / "src" / "permakey", tmp_path / "permakey")
    with open(tmp_path / "permakey" / module, "a") as f:
        f.write(f"\nimport {imported}  # noqa: E402\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout
    assert f"permakey.{module[:-3].replace('/', '.')} -> {imported}" in result.stdout
