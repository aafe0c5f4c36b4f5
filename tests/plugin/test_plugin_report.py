"""Report generation from stored results, without a cluster: the ``ztfl report`` console script,
and ``--ztfl-report`` on a ``--ztfl-resume`` run that loads every cell."""

from __future__ import annotations

from pathlib import Path

import pytest
from ztfl_plugin_support import Tripwire, apply_env, report_synth, subprocess_env, venv_script

from pytest_ztfl import matrix as mx

pytest_plugins = ("pytester",)

SMALL_YAML = """\
name: report-small
sec: [SEC0, SEC3]
net: [NET0, NET2]
data: [iid]
seeds: [0]
workload: {clients: 4, rounds: 12, eval_every: 3, target_accuracy: 0.9}
"""
CELLS = ("SEC0-NET0-iid-s0", "SEC0-NET2-iid-s0", "SEC3-NET0-iid-s0", "SEC3-NET2-iid-s0")
FIGURES = (
    "overhead_heatmap.png",
    "p99_heatmap.png",
    "round_duration_ecdf.png",
    "tta.png",
    "convergence.png",
)
# nothing to show in these rows (no failure, every cell successful): a line each, no file
NOT_DRAWN = (
    ("failure_rate_heatmap.png", "*Per-round failure rate*: no figure, no round failed"),
    ("success_counts.png", "*Cells successful*: no figure, every cell succeeded: 4 of 4"),
    ("failures_by_class.png", "*Failure events by class*: no figure, no failure event"),
)


@pytest.fixture
def stored(pytester: pytest.Pytester, tmp_path: Path) -> tuple[Path, Path]:
    path = pytester.path / "small.yaml"
    path.write_text(SMALL_YAML)
    out = tmp_path / "out"
    report_synth().build_results(out, mx.load(str(path)))
    return path, out


def _check_report(report_dir: Path) -> str:
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    assert "`matrix.json`: unusable" not in text and "`matrix.json` is missing" not in text
    for cid in CELLS:
        assert cid in text, cid
    for name in FIGURES:
        png = report_dir / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in text, name
    for name, line in NOT_DRAWN:
        assert not (report_dir / name).exists(), name
        assert line in text, name
    return text


def test_ztfl_report_command_writes_the_report(
    pytester: pytest.Pytester, stored: tuple[Path, Path], tmp_path: Path
) -> None:
    _path, out = stored
    ztfl = venv_script("ztfl")
    explicit = pytester.run(ztfl, "report", str(out), "--out", str(tmp_path / "r"))
    assert explicit.ret == 0, explicit.stderr.str()
    assert explicit.outlines[-1] == str(tmp_path / "r" / "report.md")
    text = _check_report(tmp_path / "r")
    assert "No SLO verdicts are stored" in text  # these rows were never judged

    default = pytester.run(ztfl, "report", str(out))
    assert default.ret == 0, default.stderr.str()
    _check_report(out / "report")

    missing = pytester.run(ztfl, "report", str(tmp_path / "nothing"))
    assert missing.ret == 2
    assert missing.errlines == [
        f"ztfl report: error: {tmp_path / 'nothing'}: no such results directory"
    ]


def test_report_option_on_a_resumed_run_writes_the_report(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    stored: tuple[Path, Path],
    data_dir: Path,
    tmp_path: Path,
) -> None:
    path, out = stored
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    wire = Tripwire(monkeypatch)
    report_dir = tmp_path / "rep"
    result = pytester.runpytest_inprocess(
        f"--ztfl-matrix={path}",
        f"--ztfl-out={out}",
        "--ztfl-resume",
        f"--ztfl-report={report_dir}",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=6)  # 4 cells, 2 pooled comparisons (SEC3 at NET0, NET2)
    assert wire.calls == []
    text = _check_report(report_dir)
    # The verdicts this run stored are in the report: it was written after the gates.
    assert "No SLO verdicts are stored" not in text
    assert "n = 6 verdicts in 4 of 4 cells (PASS 6)" in text  # 1 per SEC0 cell, 2 per SEC3


@pytest.mark.parametrize("live_logs", [False, True])
def test_progress_lines_are_log_records_too(
    pytester: pytest.Pytester,
    stored: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
    tmp_path: Path,
    live_logs: bool,
) -> None:
    """A progress line (here the report's) is a record of the ``pytest_ztfl`` logger: with
    ``--log-cli-level`` pytest's live logging shows it (instead of the plain line), and
    ``--log-file`` keeps it either way."""
    path, out = stored
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    log_file = tmp_path / "run.log"
    report_dir = tmp_path / "rep"
    result = pytester.runpytest_inprocess(
        f"--ztfl-matrix={path}", f"--ztfl-out={out}", "--ztfl-resume",
        f"--ztfl-report={report_dir}", f"--log-file={log_file}", "--log-file-level=INFO",
        "-p", "no:cacheprovider", *(["--log-cli-level=INFO"] if live_logs else []),
    )
    result.assert_outcomes(passed=6)
    line = f"report: {report_dir / 'report.md'}"
    text = result.stdout.str()
    assert line in log_file.read_text()
    if live_logs:
        assert any(line in x and "INFO" in x for x in result.outlines), text
        assert line not in [x.strip() for x in result.outlines], text  # not twice
    else:
        assert line in [x.strip() for x in result.outlines], text
