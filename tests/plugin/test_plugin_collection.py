"""Collection: the matrix becomes one test per cell with stable ids, user tests pick cells with
a marker, and without ``--ztfl-matrix`` the plugin adds nothing and imports nothing heavy.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
from ztfl_plugin_support import Tripwire, apply_env, collected_ids, subprocess_env

pytest_plugins = ("pytester",)

QUICK_DATA = ("iid", "noniid")


@pytest.fixture
def no_cluster(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> Tripwire:
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    return Tripwire(monkeypatch)


def _collect(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest_inprocess(
        "--collect-only", "-q", "-p", "no:cacheprovider", f"--ztfl-out={pytester.path}/out", *args
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    return collected_ids(result.outlines)


def _ids(secs: tuple[str, ...], nets: tuple[str, ...], seeds: range) -> list[str]:
    return [
        f"test_fl[{s}-{n}-{d}-s{k}]"
        for s, n, d, k in itertools.product(secs, nets, QUICK_DATA, seeds)
    ]


SECS = ("SEC0", "SEC1", "SEC2", "SEC3")


@pytest.mark.usefixtures("no_cluster")
def test_quick_collects_16_cells_in_stable_order(pytester: pytest.Pytester) -> None:
    expected = _ids(SECS, ("NET0", "NET2"), range(1))
    assert len(expected) == 16 and expected[0] == "test_fl[SEC0-NET0-iid-s0]"
    assert _collect(pytester, "--ztfl-matrix=quick") == expected
    assert _collect(pytester, "--ztfl-matrix=quick") == expected  # the same again


@pytest.mark.usefixtures("no_cluster")
def test_seed_override_doubles_quick(pytester: pytest.Pytester) -> None:
    assert _collect(pytester, "--ztfl-matrix=quick", "--ztfl-seeds=0-1") == _ids(
        SECS, ("NET0", "NET2"), range(2)
    )


@pytest.mark.usefixtures("no_cluster")
def test_paper_collects_80_cells(pytester: pytest.Pytester) -> None:
    assert _collect(pytester, "--ztfl-matrix=paper") == _ids(SECS, ("NET0", "NET2"), range(5))


@pytest.mark.usefixtures("no_cluster")
def test_full_collects_180_cells_with_mtls_suffixes(pytester: pytest.Pytester) -> None:
    ids = _collect(pytester, "--ztfl-matrix=full")
    expected = []
    for s, n, d, k in itertools.product(SECS, ("NET0", "NET2", "NET4"), QUICK_DATA, range(5)):
        modes = ("-sidecar", "-native") if s in ("SEC2", "SEC3") else ("",)
        expected += [f"test_fl[{s}-{n}-{d}-s{k}{m}]" for m in modes]
    assert len(expected) == 180
    assert ids == expected


@pytest.mark.usefixtures("no_cluster")
def test_user_test_with_marker_gets_only_matching_cells(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.mark.ztfl_cells(sec="SEC3")
        def test_mine(ztfl_cell):
            assert ztfl_cell.sec == "SEC3"

        @pytest.mark.ztfl_cells(sec=["SEC1", "SEC2"], data="iid", net="NET2")
        def test_readme_style(ztfl_result):
            pass
        """
    )
    result = pytester.runpytest_inprocess(
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--ztfl-matrix=quick",
        f"--ztfl-out={pytester.path}/out",
        "test_user.py",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    mine = [line.split("::", 1)[1] for line in result.outlines if "test_user.py::" in line]
    assert mine == [
        "test_mine[SEC3-NET0-iid-s0]",
        "test_mine[SEC3-NET0-noniid-s0]",
        "test_mine[SEC3-NET2-iid-s0]",
        "test_mine[SEC3-NET2-noniid-s0]",
        "test_readme_style[SEC1-NET2-iid-s0]",
        "test_readme_style[SEC2-NET2-iid-s0]",
    ]
    # With explicit paths the matrix's own tests are added to them (plugin.pytest_configure).
    assert len(collected_ids(result.outlines)) == 16


def test_cell_tests_skip_without_a_matrix_and_the_rest_runs(pytester: pytest.Pytester) -> None:
    """A project with its own matrix tests still runs plainly: those skip with the reason."""
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.mark.ztfl_cells(sec="SEC3")
        def test_mine(ztfl_result):
            raise AssertionError("must not run without a matrix")

        def test_session(ztfl_cluster):
            raise AssertionError("must not run without a matrix")

        def test_other():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", "test_user.py")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.stdout.str().count("needs a matrix: pass --ztfl-matrix=NAME|PATH") == 2


def test_without_a_matrix_the_plugin_adds_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert "test_plain.py::test_one PASSED" in text
    assert "test_fl" not in text and "ztfl matrix summary" not in text
    assert not (pytester.path / "ztfl-out").exists()


HEAVY = (
    "torch",
    "torchvision",
    "scipy",
    "matplotlib",
    "numpy",
    "grpc",
    "k8s_fixtures.local.backend",
    "k8s_fixtures.kube",
    "pytest_ztfl.session",
    "pytest_ztfl.runner",
    "pytest_ztfl.backends",
)


def test_help_lists_the_options_and_a_plain_run_imports_nothing_heavy(
    pytester: pytest.Pytester,
) -> None:
    help_run = pytester.runpytest_subprocess("--help")
    assert help_run.ret == pytest.ExitCode.OK
    text = help_run.stdout.str()
    assert "Zero Trust federated learning benchmark" in text
    for option in (
        "matrix",
        "backend",
        "seeds",
        "rounds",
        "clients",
        "model",
        "mtls",
        "faults",
        "net-profiles",
        "data",
        "out",
        "report",
        "resume",
        "keep-cluster",
        "slo-failure-rate",
        "slo-overhead-tail",
        "checks",
        "interleave",
        "order-seed",
        "baseline",
        "slo-overhead-median",
    ):
        assert f"--ztfl-{option}" in text, option
    assert "ztfl_matrix" in text  # the ini setting

    # A plain test run of a project with the plugin installed: nothing heavy gets imported.
    report = pytester.path / "modules.json"
    pytester.makeconftest(
        f"""
        import json, sys

        def pytest_sessionfinish(session):
            heavy = {list(HEAVY)!r}
            loaded = [m for m in heavy if m in sys.modules]
            plugin = "pytest_ztfl.plugin" in sys.modules
            with open({str(report)!r}, "w") as fh:
                json.dump({{"loaded": loaded, "plugin": plugin}}, fh)
        """
    )
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1)
    seen = json.loads(report.read_text())
    assert seen["plugin"], "the plugin was not loaded through its entry point"
    assert seen["loaded"] == []


def test_importing_the_plugin_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    code = (
        "import json, sys; import pytest_ztfl.plugin; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    result = pytester.run(sys.executable, "-c", code)
    assert result.ret == 0, result.stderr.str()
    assert json.loads(result.outlines[-1]) == []


def test_collect_only_leaves_the_previous_results_alone(
    pytester: pytest.Pytester, no_cluster: Tripwire
) -> None:
    """--collect-only runs nothing, so it must not clear the results of the last run (a
    fresh run does, on purpose)."""
    out = pytester.path / "out"
    (out / "cells").mkdir(parents=True)
    kept = out / "cells" / "SEC0-NET0-iid-s0.json"
    kept.write_text("{}")
    (out / "matrix.json").write_text('{"name": "quick"}')
    assert _collect(pytester, "--ztfl-matrix=smoke")
    assert kept.read_text() == "{}"
    assert (out / "matrix.json").read_text() == '{"name": "quick"}'


@pytest.mark.usefixtures("no_cluster")
def test_the_report_header_says_what_runs_where(pytester: pytest.Pytester) -> None:
    """One header line for the run (matrix, cells, backend and why, interleaving, results
    directory) and one for how its shaped links are emulated; informing only, so nothing is
    probed or written under --collect-only."""
    out = pytester.path / "out"
    result = pytester.runpytest_inprocess(
        "--collect-only", "-p", "no:cacheprovider", "--ztfl-matrix=smoke", f"--ztfl-out={out}",
        "--ztfl-backend=local", "--ztfl-interleave=cell",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines([
        f"ztfl: matrix smoke (4 cells), backend local (asked for), interleave cell, out {out}",
        "ztfl: NET2 shaped by kernel netem where this kernel has it, else the userspace delay "
        "line",
    ])
    assert not out.exists()
    quiet = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider",
                                         "--ztfl-matrix=smoke", f"--ztfl-out={out}")
    assert not [line for line in quiet.outlines if line.startswith("ztfl: ")]

