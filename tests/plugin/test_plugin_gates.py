"""SLO gates through stored results: ``--ztfl-resume`` loads every cell (no cluster), and the
gates turn clear violations into failures of exactly the offending tests, inconclusive
evidence into a visible warning, and store their verdicts back into the cell rows.

The rows are what a matrix run stores: event logs from fl_app's EventLog (the report tests'
synthesizer, tests/report/report_synth.py), rows from pytest_ztfl.rows.build, files from
pytest_ztfl.results.ResultStore.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ztfl_plugin_support import Tripwire, apply_env, report_synth, subprocess_env

from pytest_ztfl import matrix as mx

pytest_plugins = ("pytester",)

GATES_YAML = """\
name: gates
sec: [SEC0, SEC1, SEC2, SEC3]
net: [NET0]
data: [iid]
seeds: [0]
workload: {clients: 4, rounds: 50, eval_every: 10, target_accuracy: 0.9}
"""
FAILED_ROUNDS = frozenset({5, 10, 15, 20, 25, 30})  # 6 of 50: CI lower bound 4.5% > 2%
# Round-duration factors vs SEC0 (the synthesizer adds lognormal noise, sigma 0.12):
# SEC2 ~3x (clear violation of a 1.5 limit); SEC3 ~1.55x, its 95% CI reaching below 1.5.
FACTORS = {"SEC1": 1.0, "SEC2": 3.0, "SEC3": 1.5}
LIMITS = ("--ztfl-slo-overhead-median=1.5", "--ztfl-slo-overhead-tail=1.5")


def _cells(path: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((path / "cells").glob("*.json"))}


def _durations(row: dict[str, Any]) -> list[float]:
    return [r["duration"] for r in row["metrics"]["rounds"] if r["ok"]]


@pytest.fixture
def stored(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> Iterator[tuple[Path, Path]]:
    """(matrix file, results dir) with all four cells stored as finished; no cluster may be
    created while the test uses them."""
    synth = report_synth()
    for sec, factor in FACTORS.items():
        monkeypatch.setitem(synth.SEC_FACTOR, sec, factor)
    path = pytester.path / "gates.yaml"
    path.write_text(GATES_YAML)
    out = tmp_path / "out"
    # The matrix the plugin will compute from the same file, so --ztfl-resume accepts it.
    synth.build_results(
        out, mx.load(str(path)), faults={"SEC1-NET0-iid-s0": {"fail_rounds": FAILED_ROUNDS}}
    )
    rows = _cells(out)
    # The scenario is what it claims to be (plain arithmetic on the stored rows).
    base = statistics.median(_durations(rows["SEC0-NET0-iid-s0"]))
    assert sum(not r["ok"] for r in rows["SEC1-NET0-iid-s0"]["metrics"]["rounds"]) == 6
    assert 2.7 < statistics.median(_durations(rows["SEC2-NET0-iid-s0"])) / base < 3.3
    assert 1.5 < statistics.median(_durations(rows["SEC3-NET0-iid-s0"])) / base < 1.6
    assert all("slo" not in r for r in rows.values())
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    wire = Tripwire(monkeypatch)
    yield path, out
    assert wire.calls == []


def _outcomes(result: pytest.RunResult) -> dict[str, Any]:
    """cell id -> the call-phase report of its test_fl."""
    out = {}
    for rep in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        m = re.search(r"test_fl\[([^\]]+)\]", rep.nodeid)
        if m and rep.when == "call":
            out[m.group(1)] = rep
    return out


def test_gates_fail_clear_violations_and_warn_on_inconclusive(
    pytester: pytest.Pytester, stored: tuple[Path, Path], tmp_path: Path
) -> None:
    path, out = stored
    bench = tmp_path / "b.json"
    result = pytester.runpytest_inprocess(
        f"--ztfl-matrix={path}",
        f"--ztfl-out={out}",
        "--ztfl-resume",
        *LIMITS,
        f"--benchmark-json={bench}",
        "-p",
        "no:cacheprovider",
    )
    text = result.stdout.str()
    reports = _outcomes(result)
    assert {k: r.outcome for k, r in reports.items()} == {
        "SEC0-NET0-iid-s0": "passed",
        "SEC1-NET0-iid-s0": "failed",
        "SEC2-NET0-iid-s0": "failed",
        "SEC3-NET0-iid-s0": "passed",
    }, text
    assert result.ret == pytest.ExitCode.TESTS_FAILED

    # (a) the failure-rate gate names metric, estimate, CI, limit and n.
    sec1 = reports["SEC1-NET0-iid-s0"].longreprtext
    assert re.search(
        r"FAIL per-round failure rate: 12% \(95% CI \[4\.\d+%, 24\.\d+%\]\) > limit 2%, n=50; "
        r"6 failed of 50 rounds",
        sec1,
    ), sec1
    assert "FAIL median" not in sec1
    assert "Traceback" not in sec1 and len(sec1.splitlines()) <= 4

    # (b) a clear overhead violation fails on its own (the run itself succeeded).
    sec2 = reports["SEC2-NET0-iid-s0"].longreprtext
    assert re.search(
        r"FAIL median round duration SEC2/SEC0: 3\.\d+x \(95% CI \[[\d.]+x, [\d.]+x\]\) "
        r"> limit 1\.5x, n=50 vs 50",
        sec2,
    ), sec2
    assert "run did not succeed" not in sec2 and "failure rate" not in sec2
    # The stored rows ran apart (no block run recorded): compared unpaired, and said so.
    assert "not paired" in sec2 and "detects >= " in sec2

    # (b') the pooled gates: SEC2's median fails there too; a p95 from 50 rounds per arm
    # (fewer than the 72 an honest interval needs) cannot fail, whatever its value.
    pooled = {
        m.group(1): rep
        for rep in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
        if rep.when == "call" and (m := re.search(r"test_overhead_pooled\[([^\]]+)\]", rep.nodeid))
    }
    assert {k: r.outcome for k, r in pooled.items()} == {
        "SEC1-NET0": "passed", "SEC2-NET0": "failed", "SEC3-NET0": "passed"}, text
    p2 = pooled["SEC2-NET0"].longreprtext
    assert "FAIL median round duration SEC2-NET0 / SEC0, pooled over 1 block(s)" in p2, p2
    assert "FAIL p95" not in p2
    assert re.search(r"ZtflInconclusiveWarning: SEC2-NET0: inconclusive: INCONCLUSIVE p95 round "
                     r"duration .* CI unreliable: n=50 < 72", text), text

    # (c) inconclusive: passes, with a visible warning naming the cell and the numbers.
    assert "warnings summary" in text
    assert re.search(
        r"ZtflInconclusiveWarning: SEC3-NET0-iid-s0: inconclusive: INCONCLUSIVE median round "
        r"duration SEC3/SEC0: 1\.5\dx \(95% CI \[1\.4\dx, 1\.\d+x\]\) > limit 1\.5x, n=50 vs 50; "
        r"above the limit but the CI includes it",
        text,
    ), text
    assert "SEC0-NET0-iid-s0: inconclusive" not in text

    # (d) verdicts are stored in the rows (and in runs.jsonl), nothing else changed.
    rows = _cells(out)
    verdicts = {cid: {v["metric"]: v["verdict"] for v in row["slo"]} for cid, row in rows.items()}
    assert verdicts == {
        "SEC0-NET0-iid-s0": {"per-round failure rate": "pass"},
        "SEC1-NET0-iid-s0": {
            "per-round failure rate": "fail",
            "median round duration SEC1/SEC0": "pass",
        },
        "SEC2-NET0-iid-s0": {
            "per-round failure rate": "pass",
            "median round duration SEC2/SEC0": "fail",
        },
        "SEC3-NET0-iid-s0": {
            "per-round failure rate": "pass",
            "median round duration SEC3/SEC0": "inconclusive",
        },
    }
    sec2_median = next(v for v in rows["SEC2-NET0-iid-s0"]["slo"] if "median" in v["metric"])
    assert sec2_median["limit"] == 1.5 and sec2_median["n"] == [50, 50]
    assert sec2_median["ci_low"] > 1.5 and sec2_median["estimate"] > 2.5
    for cid, row in rows.items():
        assert row["events_file"] == f"events/{cid}.jsonl" and "resumed" not in row
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert {r["cell"]["id"]: len(r["slo"]) for r in runs} == {
        "SEC0-NET0-iid-s0": 1,
        "SEC1-NET0-iid-s0": 2,
        "SEC2-NET0-iid-s0": 2,
        "SEC3-NET0-iid-s0": 2,
    }

    # The benchmark samples are the stored server-measured durations of the completed rounds
    # (replay clock): the sample the gates and the report use, failed rounds left out.
    data = json.loads(bench.read_text())
    by_cell = {b["name"]: b for b in data["benchmarks"]}
    assert set(by_cell) == {f"test_fl[{c}]" for c in rows}
    assert any(not r["ok"] for row in rows.values() for r in row["metrics"]["rounds"])
    for cid, row in rows.items():
        completed = [r["duration"] for r in row["metrics"]["rounds"] if r["ok"]]
        b = by_cell[f"test_fl[{cid}]"]
        assert b["stats"]["data"] == pytest.approx(completed, rel=1e-9, abs=1e-9)
        assert b["group"] == "NET0-iid" and b["options"]["timer"] == "ztfl_replay_clock"
        assert b["extra_info"]["cell"] == cid and b["extra_info"]["success"] is row["success"]

    # The summary table, in its own section, shows every cell with its worst SLO verdict.
    assert re.search(r"^=+ ztfl =+$", text, re.M) and "ztfl matrix summary" in text
    worst = {"SEC0-NET0-iid-s0": "PASS", "SEC1-NET0-iid-s0": "FAIL",
             "SEC2-NET0-iid-s0": "FAIL", "SEC3-NET0-iid-s0": "INCONCLUSIVE"}
    for cid, row in rows.items():  # completed of planned rounds
        ok = sum(r["ok"] for r in row["metrics"]["rounds"])
        assert re.search(rf"^{cid}\s+(yes|NO)\s+{worst[cid]}\s+{ok}/50\s", text, re.M), cid


def test_resuming_a_judged_matrix_again_changes_no_file(
    pytester: pytest.Pytester, stored: tuple[Path, Path]
) -> None:
    path, out = stored
    args = (f"--ztfl-matrix={path}", f"--ztfl-out={out}", "--ztfl-resume", *LIMITS)
    first = pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider")
    first.assert_outcomes(passed=4, failed=3, warnings=4)

    def snapshot() -> dict[Path, tuple[bytes, int]]:
        # matrix.json is rewritten (same content) by every run; rows and tables must not be.
        files = [p for p in out.rglob("*") if p.is_file() and p.name != "matrix.json"]
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}

    before = snapshot()
    assert len([p for p in before if p.parent.name == "cells"]) == 4
    again = pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider")
    again.assert_outcomes(passed=4, failed=3, warnings=4)
    assert snapshot() == before


def test_limits_are_options_a_loose_limit_passes(
    pytester: pytest.Pytester, stored: tuple[Path, Path]
) -> None:
    """The same stored rows with loose overhead limits (3.5x) and a 20% failure-rate limit:
    every gate passes, so no test fails; SEC1's run, unsuccessful by the seed study's
    definition, passes with a warning."""
    path, out = stored
    result = pytester.runpytest_inprocess(
        f"--ztfl-matrix={path}",
        f"--ztfl-out={out}",
        "--ztfl-resume",
        "--ztfl-slo-failure-rate=0.2",
        "--ztfl-slo-overhead-median=3.5",
        "--ztfl-slo-overhead-tail=3.5",
        "-p",
        "no:cacheprovider",
    )
    reports = _outcomes(result)
    assert [k for k, r in reports.items() if r.failed] == []
    result.stdout.fnmatch_lines(["*ZtflUnsuccessfulRunWarning: SEC1-NET0-iid-s0: run not "
                                 "successful by the seed study's definition (6 rounds had too "
                                 "few participants)*"])
    stored_rows = _cells(out)
    rate = next(v for v in stored_rows["SEC1-NET0-iid-s0"]["slo"] if "failure" in v["metric"])
    assert rate["verdict"] == "pass" and rate["limit"] == 0.2


def test_an_overhead_gate_without_its_baseline_is_inconclusive_not_a_silent_pass(
    pytester: pytest.Pytester, stored: tuple[Path, Path]
) -> None:
    """SEC2 is ~3x SEC0, a clear violation; with SEC0's row gone (e.g. a run of only the SEC2
    cell into a fresh directory) the overhead cannot be judged: the gate says so (a warning
    naming the missing baseline) instead of passing on the failure-rate gate alone."""
    path, out = stored
    (out / "cells" / "SEC0-NET0-iid-s0.json").unlink()
    result = pytester.runpytest_inprocess(
        f"--ztfl-matrix={path}", f"--ztfl-out={out}", "--ztfl-resume", *LIMITS,
        "-k", "SEC2", "-p", "no:cacheprovider",
    )
    text = result.stdout.str()
    assert {k: r.outcome for k, r in _outcomes(result).items()} == {
        "SEC2-NET0-iid-s0": "passed"}, text
    assert re.search(
        r"ZtflInconclusiveWarning: SEC2-NET0-iid-s0: inconclusive: INCONCLUSIVE median round "
        r"duration SEC2/SEC0: n/a \(95% CI n/a\) \? limit 1\.5x, n=50 vs 0; no estimate; "
        r"no SEC0 baseline", text), text
    stored_slo = _cells(out)["SEC2-NET0-iid-s0"]["slo"]
    assert [v["verdict"] for v in stored_slo] == ["pass", "inconclusive"]


FAULT_YAML = """\
name: faulty
sec: [SEC0]
net: [NET0]
data: [iid]
seeds: [0]
faults: [client-oom, cpu-throttle]
workload: {clients: 3, rounds: 10, eval_every: 5, target_accuracy: 0.9}
"""


def test_a_fault_cell_whose_blind_labels_disagree_with_its_class_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    """The stored rows say what the taxonomy (blind) labelled: the OOM cell's failure as
    resource (agrees), the throttled cell's as unclassified (disagrees: its test fails, naming
    the fault, the expected class, what was said and why)."""
    synth = report_synth()
    path = pytester.path / "faulty.yaml"
    path.write_text(FAULT_YAML)
    out = tmp_path / "out"
    synth.build_results(out, mx.load(str(path)))
    said = {
        "client-oom": ("resource", "its pod was OOM-killed"),
        "cpu-throttle": ("unclassified", "timeout (x); looked at: throttled 0.00 s"),
    }
    for file in (out / "cells").glob("*.json"):
        row = json.loads(file.read_text())
        name = row["cell"]["fault"]
        cls, why = said[name]
        expect = "resource"
        row["failures"] = [{"round": 2, "client": 1, "event": "timeout", "class": cls,
                            "why": why}]
        row["overlays"]["fault"] = {"name": name, "actions": [], "expect": expect,
                                    "classified": {cls: 1}, "agrees": cls == expect}
        file.write_text(json.dumps(row))
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    wire = Tripwire(monkeypatch)
    result = pytester.runpytest_inprocess(
        f"--ztfl-matrix={path}", f"--ztfl-out={out}", "--ztfl-resume", "-p", "no:cacheprovider"
    )
    assert wire.calls == []
    reports = _outcomes(result)
    outcome = {k: r.outcome for k, r in reports.items()}
    oom = next(k for k in outcome if k.endswith("client-oom"))
    cpu = next(k for k in outcome if k.endswith("cpu-throttle"))
    assert outcome[oom] == "passed" and outcome[cpu] == "failed", result.stdout.str()
    text = reports[cpu].longreprtext
    assert ("fault cpu-throttle must be classified resource; the taxonomy (blind to the fault) "
            "said {'unclassified': 1}, e.g. timeout of client 1: timeout (x)") in text, text
