"""The code stays ruff- and mypy-clean and keeps its one-way package imports (import-linter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([str(BIN / "ruff"), "check", "src", "tests", "benchmarks"], id="ruff"),
        pytest.param([str(BIN / "mypy")], id="mypy"),
        pytest.param([str(BIN / "lint-imports")], id="import-linter"),
    ],
)
def test_static_check(argv: list[str]) -> None:
    proc = _run(*argv)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_import_contract_catches_a_violation(tmp_path: Path) -> None:
    """The contract is live: a k8s_fixtures module importing fl_app is reported."""
    bad = REPO / "src" / "k8s_fixtures" / "_contract_probe.py"
    bad.write_text(
        '"""Temporary: must be rejected by import-linter."""\nimport fl_app  # noqa: F401\n'
    )
    try:
        proc = _run(str(BIN / "lint-imports"))
    finally:
        bad.unlink()
    assert proc.returncode != 0
    assert "k8s_fixtures._contract_probe -> fl_app" in proc.stdout
