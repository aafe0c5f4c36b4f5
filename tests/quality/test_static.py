"""The code stays ruff- and mypy-clean and keeps its one-way package imports (import-linter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([str(BIN / "ruff"), "check", "fl_app", "k8s_fixtures", "pytest_ztfl",
                      "tests", "benchmarks", "conftest.py"], id="ruff"),
        pytest.param([str(BIN / "mypy")], id="mypy"),
        pytest.param([str(BIN / "lint-imports")], id="import-linter"),
    ],
)
def test_static_check(argv: list[str]) -> None:
    proc = _run(*argv)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_import_contract_catches_a_violation(tmp_path: Path) -> None:
    """The contract is live: a k8s_fixtures module importing fl_app is reported."""
    bad = REPO / "k8s_fixtures" / "_contract_probe.py"
    bad.write_text(
        '"""Temporary: must be rejected by import-linter."""\nimport fl_app  # noqa: F401\n'
    )
    try:
        proc = _run(str(BIN / "lint-imports"))
    finally:
        bad.unlink()
    assert proc.returncode != 0
    assert "k8s_fixtures._contract_probe -> fl_app" in proc.stdout


# The report's layers, broken three ways below.
REPORT_LAYERS = ("report: md and figures over claims and plot, over verdicts, over measures, over "
                 "calc, over arms, load and fmt, over model and study")

# Every contract inside a package, by its name's prefix, with an import that breaks it:
# (module under the repository, the line appended to it, the contract's name).
PACKAGE_CONTRACTS = ("faults:", "analysis:", "report:", "matrix:", "proofs:", "platform:",
                     "workload:", "local:", "netem:", "netpol:", "kube:", "tls:", "nodeagent:")
PACKAGES = ("fl_app", "k8s_fixtures", "pytest_ztfl")
VIOLATIONS = [
    pytest.param("pytest_ztfl/faults/netpol.py", "from pytest_ztfl.faults import mtls",
                 "faults: the fault families never import each other", id="faults-independent"),
    pytest.param("pytest_ztfl/faults/base.py", "from pytest_ztfl.faults import network",
                 "faults: the families build on base, base on none of them", id="faults-layers"),
    pytest.param("pytest_ztfl/analysis/base.py", "from pytest_ztfl.analysis import paired",
                 "analysis: paired over the one-sample estimators, each on base alone",
                 id="analysis-layers"),
    pytest.param("pytest_ztfl/analysis/ratios.py", "from pytest_ztfl.analysis import tta",
                 "analysis: paired over the one-sample estimators, each on base alone",
                 id="analysis-layers-independent"),
    pytest.param("pytest_ztfl/analysis/tta.py", "from pytest_ztfl.report import fmt",
                 "analysis: pure numbers, never imports the report", id="analysis-no-report"),
    pytest.param("pytest_ztfl/report/model.py", "from pytest_ztfl.report import calc",
                 REPORT_LAYERS, id="report-layers"),
    pytest.param("pytest_ztfl/report/figures/grids.py",
                 "from pytest_ztfl.report.md import document",
                 REPORT_LAYERS, id="report-layers-independent"),
    pytest.param("pytest_ztfl/report/study.py", "from pytest_ztfl.report import verdicts",
                 REPORT_LAYERS, id="report-study-under-its-verdicts"),
    pytest.param("pytest_ztfl/report/md/common.py", "from pytest_ztfl.report.md import meta",
                 "report: md's document over its sections, the sections over common alone",
                 id="report-md-layers"),
    pytest.param("pytest_ztfl/report/md/cells.py", "from pytest_ztfl.report.md import checks",
                 "report: md's document over its sections, the sections over common alone",
                 id="report-md-sections-independent"),
    pytest.param("pytest_ztfl/matrix/errors.py", "from pytest_ztfl.matrix import model",
                 "matrix: parsing over the model, the model over heterogeneity and resources, "
                 "all over errors",
                 id="matrix-layers"),
    pytest.param("k8s_fixtures/proofs/base.py", "from k8s_fixtures.proofs import mesh",
                 "proofs: running the proofs over the mesh's and hardening's, over the base",
                 id="proofs-layers"),
    pytest.param("k8s_fixtures/tls/ca.py", "import k8s_fixtures.local.topology",
                 "platform: TLS and the policies know no backend, overlay or proof",
                 id="platform-tls-leaf"),
    pytest.param("fl_app/tensors.py", "import fl_app.servicer",
                 "workload: the processes over the servicer, over the round's parts, over the "
                 "data model", id="workload-layers"),
    pytest.param("k8s_fixtures/local/pods.py", "import k8s_fixtures.local.backend",
                 "local: the CLI over the cluster, over its parts, over pods, over the plumbing",
                 id="local-layers"),
    pytest.param("k8s_fixtures/netem/profiles.py", "import k8s_fixtures.netem.overlay",
                 "netem: the CLI over calibration and the overlay, over shaping, over profiles",
                 id="netem-layers"),
    pytest.param("k8s_fixtures/netpol/model.py", "import k8s_fixtures.netpol.nft",
                 "netpol: the CLI over the overlay and the prober, over the compilers, over the "
                 "model", id="netpol-layers"),
    pytest.param("k8s_fixtures/kube/status.py", "import k8s_fixtures.kube.client",
                 "kube: kind over the factory, over the cluster, over its API and readiness, "
                 "over status", id="kube-layers"),
    pytest.param("k8s_fixtures/nodeagent/wait.py", "import k8s_fixtures.nodeagent.agent",
                 "nodeagent: the agent over its manifests and the in-pod wait",
                 id="nodeagent-layers"),
    pytest.param("k8s_fixtures/tls/ca.py", "import k8s_fixtures.tls.secret",
                 "tls: the probe over the TLS modes, over certificates and logs, over parsing",
                 id="tls-layers"),
]


def _package_contracts(prefix: str) -> list[dict[str, object]]:
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return [c for c in conf["contracts"] if c["name"].startswith(prefix)]


def _copy_with_contracts(tmp_path: Path, prefix: str) -> None:
    """The three packages copied to ``tmp_path`` with an .importlinter config holding only the
    contracts whose name starts with ``prefix``."""
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    lines = ["[importlinter]", "root_packages =" + "".join(f"\n    {p}" for p in PACKAGES),
             "exclude_type_checking_imports = true"]
    for i, c in enumerate(_package_contracts(prefix)):
        lines.append(f"\n[importlinter:contract:{i}]")
        for k, v in c.items():
            lines.append(f"{k} =" + "".join(f"\n    {x}" for x in v) if isinstance(v, list)
                         else f"{k} = {v}")
    (tmp_path / ".importlinter").write_text("\n".join(lines) + "\n")


def _lint_copy(tmp_path: Path) -> tuple[int, str]:
    """lint-imports on the copy: its status and its output, whitespace normalised (it wraps
    long contract names)."""
    proc = subprocess.run([str(BIN / "lint-imports"), "--config", ".importlinter"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={"PATH": str(BIN), "PYTHONPATH": str(tmp_path)})
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_every_package_contract_is_shown_failing() -> None:
    """Each contract inside a package has a case below that breaks it."""
    shown = {p.values[2] for p in VIOLATIONS}
    for prefix in PACKAGE_CONTRACTS:
        names = {str(c["name"]) for c in _package_contracts(prefix)}
        assert names, f"no contract named {prefix}..."
        assert names <= shown, f"never shown failing: {sorted(names - shown)}"


@pytest.mark.parametrize(("module", "line", "contract"), VIOLATIONS)
def test_package_contracts_catch_a_violation(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """A package's contracts are live: on a copy of the packages with one import that breaks
    one of them (a fault family importing another, base importing a family, a lower layer of
    analysis, the report, the matrix or the proofs importing a higher one, analysis importing
    the report, TLS importing the local backend),
    lint-imports fails naming that contract; the unmodified copy passes."""
    prefix = contract.split(":", 1)[0] + ":"
    _copy_with_contracts(tmp_path, prefix)
    status, out = _lint_copy(tmp_path)
    assert status == 0, out
    assert f"{contract} KEPT" in out, out
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    status, out = _lint_copy(tmp_path)
    assert status != 0
    assert f"{contract} BROKEN" in out, out


def test_no_import_cycles() -> None:
    """No module of the three packages reaches itself through imports, function-level imports
    included (grimp, the graph import-linter builds; imports for annotations only left out)."""
    import grimp

    graph = grimp.build_graph("fl_app", "k8s_fixtures", "pytest_ztfl",
                              exclude_type_checking_imports=True)
    cycles = sorted(
        m for m in graph.modules
        if any(graph.chain_exists(importer=dep, imported=m)
               for dep in graph.find_modules_directly_imported_by(m) if dep in graph.modules)
    )
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_no_module_is_over_500_lines() -> None:
    """Small modules with one job: none of the three packages' modules (generated protobuf code
    aside) is over 500 lines."""
    long = {
        str(p.relative_to(REPO)): n
        for pkg in PACKAGES
        for p in sorted((REPO / pkg).rglob("*.py"))
        if "_pb2" not in p.name and (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}, long
