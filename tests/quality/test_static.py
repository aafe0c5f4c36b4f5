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


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("netpol.py", "from pytest_ztfl.faults import mtls", "never import each other"),
        ("base.py", "from pytest_ztfl.faults import network", "build on base"),
    ],
)
def test_fault_layer_contracts_catch_a_violation(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """The faults package's contracts are live: on a copy of pytest_ztfl with one import that
    breaks them (a family importing another, base importing a family), lint-imports fails
    naming the contract; the unmodified copy passes."""
    import shutil
    import tomllib

    shutil.copytree(REPO / "src" / "pytest_ztfl", tmp_path / "pytest_ztfl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    faults_contracts = [c for c in conf["contracts"] if c["name"].startswith("faults:")]
    lines = ["[importlinter]", "root_packages =\n    pytest_ztfl",
             "exclude_type_checking_imports = true"]
    for i, c in enumerate(faults_contracts):
        lines.append(f"\n[importlinter:contract:{i}]")
        for k, v in c.items():
            lines.append(f"{k} =" + "".join(f"\n    {x}" for x in v) if isinstance(v, list)
                         else f"{k} = {v}")
    (tmp_path / ".importlinter").write_text("\n".join(lines) + "\n")

    def lint() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "lint-imports"), "--config", ".importlinter"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env={"PATH": str(BIN), "PYTHONPATH": str(tmp_path)})

    ok = lint()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    target = tmp_path / "pytest_ztfl" / "faults" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    bad = lint()
    assert bad.returncode != 0
    assert f"{contract}" in bad.stdout and "BROKEN" in bad.stdout, bad.stdout
