"""The plugin on real clusters (local backend: network namespaces; needs root).

* the smoke preset end to end, exactly the issue's acceptance command: every cell passes,
  results trace back to the server's event logs, pytest-benchmark's samples are the
  server-measured rounds, ``pytest-benchmark compare`` reads the file, the report is written,
  and the cluster leaves nothing behind;
* a matrix killed after its first cell, then ``--ztfl-resume``: only the missing cell runs.

Each run uses a private state root (``ZTFL_STATE_DIR``), so the leak checks see only the
clusters these tests create, never those of other harnesses on the machine.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ztfl_plugin_support import (
    apply_env,
    backend_cluster_name,
    cluster_dirs,
    events_of,
    read_jsonl,
    subprocess_env,
    venv_script,
    ztfl_netns,
)

pytest_plugins = ("pytester",)

SMOKE = ("SEC0-NET0-iid-s0", "SEC0-NET2-iid-s0", "SEC3-NET0-iid-s0", "SEC3-NET2-iid-s0")
RUN_TIMEOUT = 900.0


def _assert_no_leftovers(state_root: Path, clusters: list[str]) -> None:
    assert clusters, "no cluster name to check"
    assert cluster_dirs(state_root) == [], "a cluster record was left behind"
    left = sorted(ns for ns in ztfl_netns() for c in clusters if ns.startswith(c + "-"))
    assert left == [], f"network namespaces left behind: {left}"


def _round_durations(row: dict[str, Any]) -> list[float]:
    return [r["duration"] for r in row["metrics"]["rounds"]]


@pytest.mark.slow
@pytest.mark.privileged
def test_smoke_matrix_end_to_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    state_root = tmp_path / "state"
    apply_env(monkeypatch, subprocess_env(data_dir, state_root))
    out, bench, report = tmp_path / "out", tmp_path / "b.json", tmp_path / "report"
    result = pytester.runpytest_subprocess(
        "--ztfl-matrix=smoke",
        f"--ztfl-out={out}",
        f"--benchmark-json={bench}",
        f"--ztfl-report={report}",
        "--ztfl-backend=local",
        "-p",
        "no:cacheprovider",
        "-v",
        timeout=RUN_TIMEOUT,
    )
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, text + result.stderr.str()
    result.assert_outcomes(passed=6)  # 4 cells, then SEC3 pooled at NET0 and at NET2
    for cid in SMOKE:
        assert f"ztfl::test_fl[{cid}] PASSED" in text, cid
    for group in ("SEC3-NET0", "SEC3-NET2"):
        assert f"ztfl::test_overhead_pooled[{group}] PASSED" in text, group
    # live progress (-v): each block counted with an estimate of the rest, each round named
    assert re.search(r"^block 1/2 NET\d-iid-s0: 2 arm\(s\)", text, re.M), text
    assert re.search(r"^block 2/2 NET\d-iid-s0: .*min so far, about [\d.]+ min left", text,
                     re.M), text
    assert re.search(r"^SEC3-NET2-iid-s0: round 3: [\d.]+ s, 3 participants$", text, re.M), text
    cluster = backend_cluster_name(result.outlines)
    assert cluster is not None, text

    # The design: two blocks (NET0, NET2), each SEC0 and SEC3 interleaved round by round; the
    # tests ran in the design's recorded order.
    design = json.loads((out / "design.json").read_text())
    order = [a for b in design["blocks"] for a in b["arms"]]
    assert sorted(order) == sorted(SMOKE) and design["mode"] == "round"
    ran = [m.group(1) for line in result.outlines
           if (m := re.match(r"ztfl::test_fl\[([^\]]+)\] PASSED", line))]
    assert ran == order

    # runs.jsonl: one row per cell; every round duration is the server's round_end duration.
    rows = {r["cell"]["id"]: r for r in read_jsonl(out / "runs.jsonl")}
    assert sorted(rows) == sorted(SMOKE)
    for cid, row in rows.items():
        assert row["success"] is True and row["error"] is None, (cid, row["success_reason"])
        assert row["proofs"] and all(p["passed"] for p in row["proofs"]), row["proofs"]
        assert row["cell"]["workload"]["clients"] == 3
        assert row["events_file"] == f"events/{cid}.jsonl"
        events = out / row["events_file"]
        ends = events_of(events, "round_end")
        starts = {e["round"]: e["t"] for e in events_of(events, "round_start")}
        assert [e["round"] for e in ends] == [1, 2, 3]
        assert _round_durations(row) == [e["duration"] for e in ends]
        for e in ends:  # the duration is the server's round_start -> round_end interval
            assert abs((e["t"] - starts[e["round"]]) - e["duration"]) < 0.25, e
        assert {v["metric"] for v in row["slo"]} >= {"per-round failure rate"}
        assert all(v["verdict"] != "fail" for v in row["slo"]), row["slo"]
        d = row["design"]
        assert d["mode"] == "round" and d["order_seed"] == design["order_seed"]
        partner = next(c for c in SMOKE if c != cid and c.split("-")[1] == cid.split("-")[1])
        assert d["block_run"] == rows[partner]["design"]["block_run"]  # interleaved together
        assert [len(o) for o in d["round_order"]] == [2, 2, 2]
        for r in row["metrics"]["rounds"]:
            assert r["cpu_seconds"] > 0 and r["position"] in (0, 1), r
        # Its profile was calibrated aside (while the block's pods started and were proven,
        # from the end of the block before it): done before the block's FL runs were released
        # (the block waited for it: phase "calibrated").
        net = row["cell"]["net"]
        assert row["overlays"]["net"]["calibration"] == {
            "ref": f"calibration/{net}.json", "passed": True}
        cal = json.loads((out / "calibration" / f"{net}.json").read_text())
        laps = d["phases"]
        waited = row["started_wall"] + laps["deploy"] + laps["prove"] + laps["calibrated"]
        assert cal["started"] + cal["duration_s"] <= waited + 0.5, (cal, waited, laps)
    # ... and no calibration overlapped a measured round of any cell
    rounds = [(e["wall"] - e["duration"], e["wall"]) for row in rows.values()
              for e in events_of(out / row["events_file"], "round_end")]
    for path in (out / "calibration").glob("*.json"):
        cal = json.loads(path.read_text())
        span = (cal["started"], cal["started"] + cal["duration_s"])
        assert not [r for r in rounds if r[0] < span[1] and span[0] < r[1]], (path.name, span)
    assert {p["name"] for p in rows["SEC3-NET2-iid-s0"]["proofs"]} > {"wire"}

    # rounds.csv: one line per round, the same durations.
    with (out / "rounds.csv").open(newline="") as fh:
        rounds = list(csv.DictReader(fh))
    assert len(rounds) == 12
    for cid, row in rows.items():
        mine = sorted((int(r["round"]), float(r["duration"])) for r in rounds if r["cell"] == cid)
        assert mine == list(enumerate(_round_durations(row), start=1))

    # pytest-benchmark: one sample per server-measured round (the replay clock).
    data = json.loads(bench.read_text())
    by_name = {b["name"]: b for b in data["benchmarks"]}
    assert sorted(by_name) == sorted(f"test_fl[{cid}]" for cid in SMOKE)
    for cid, row in rows.items():
        b = by_name[f"test_fl[{cid}]"]
        completed = [r["duration"] for r in row["metrics"]["rounds"] if r["ok"]]
        assert b["stats"]["data"] == pytest.approx(completed, rel=1e-9, abs=1e-9)
        assert b["stats"]["rounds"] == 3 and b["options"]["timer"] == "ztfl_replay_clock"
        assert b["group"] == f"{row['cell']['net']}-iid"
        assert b["extra_info"]["cell"] == cid and b["extra_info"]["success"] is True
    compare = subprocess.run(
        [venv_script("pytest-benchmark"), "compare", str(bench), "--group-by=group"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert compare.returncode == 0, compare.stderr
    for cid in SMOKE:
        assert f"test_fl[{cid}]" in compare.stdout, compare.stdout

    # The report and its figures.
    md = (report / "report.md").read_text(encoding="utf-8")
    for cid in SMOKE:
        assert cid in md
    assert "## Measurement design" in md and "## Where a round's time goes" in md
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert len(pngs) >= 4, pngs  # overhead, p99, ECDF, convergence; more with failures
    for name in pngs:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md

    _assert_no_leftovers(state_root, [cluster])


RESUME_YAML = """\
name: resume
sec: [SEC0, SEC1]
net: [NET0]
data: [iid]
seeds: [0, 1]
workload: {clients: 2, rounds: 2, eval_every: 2}
"""
RESUME_SEED = "1"  # --ztfl-order-seed: which block runs first is read from design.json


def _matrix_run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
    tmp_path: Path,
    matrix_yaml: str,
) -> tuple[Path, Path, list[str]]:
    """A private state root and results dir for a matrix file: (state root, out, pytest args)."""
    state_root = tmp_path / "state"
    apply_env(monkeypatch, subprocess_env(data_dir, state_root))
    matrix_file = pytester.path / "matrix.yaml"
    matrix_file.write_text(matrix_yaml)
    out = tmp_path / "out"
    args = [
        f"--ztfl-matrix={matrix_file}",
        f"--ztfl-out={out}",
        "--ztfl-backend=local",
        "-p",
        "no:cacheprovider",
        "-v",
    ]
    return state_root, out, args


def _wait_judged(path: Path, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until ``path`` holds a row with its SLO verdicts (the cell's last write)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the matrix run ended early (exit {proc.returncode})")
        if path.exists() and "slo" in json.loads(path.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} not written within the deadline")


@pytest.mark.slow
@pytest.mark.privileged
def test_resume_after_a_killed_matrix_runs_only_the_missing_block(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    """Two blocks (seeds 0 and 1) of SEC0 and SEC1 each. The harness is SIGKILLed once the
    first block's two cells are stored and judged; ``--ztfl-resume`` measures only the other
    block, in the same recorded order, and leaves the first block's files as they were."""
    state_root, out, args = _matrix_run(pytester, monkeypatch, data_dir, tmp_path, RESUME_YAML)
    args = [*args, f"--ztfl-order-seed={RESUME_SEED}"]
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=pytester.path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while not (out / "design.json").exists() and proc.poll() is None:
                time.sleep(0.2)  # written as the first block starts
            design = json.loads((out / "design.json").read_text())
            first, second = (list(b["arms"]) for b in design["blocks"])
            for cid in first:
                _wait_judged(out / "cells" / f"{cid}.json", proc, deadline)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)  # a crash: no teardown, no summary
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert not any((out / "cells" / f"{c}.json").exists() for c in second), "block 2 ran first"
    killed_clusters = cluster_dirs(state_root)
    assert len(killed_clusters) == 1  # the dead harness's cluster, recorded
    kept = {c: (out / "cells" / f"{c}.json").read_bytes() for c in first}
    kept_events = {c: (out / "events" / f"{c}.jsonl").read_bytes() for c in first}

    result = pytester.runpytest_subprocess(*args, "--ztfl-resume", timeout=RUN_TIMEOUT)
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, text + result.stderr.str()
    result.assert_outcomes(passed=5)  # 4 cells, SEC1 pooled
    for c in second:
        assert f"{c}: pods ready" in text, c
    for c in first:
        assert f"{c}: pods ready" not in text, c
        assert (out / "cells" / f"{c}.json").read_bytes() == kept[c]
        assert (out / "events" / f"{c}.jsonl").read_bytes() == kept_events[c]
    assert json.loads((out / "design.json").read_text()) == design  # the same orders
    rows = {r["cell"]["id"]: r for r in read_jsonl(out / "runs.jsonl")}
    assert sorted(rows) == sorted([*first, *second])
    assert all(rows[c]["success"] and "slo" in rows[c] for c in second)
    assert min(rows[c]["finished_wall"] for c in second) > max(
        json.loads(kept[c])["finished_wall"] for c in first
    )

    cluster = backend_cluster_name(result.outlines)
    assert cluster is not None and cluster not in killed_clusters
    # The killed run's cluster was purged when the resumed run started its own.
    _assert_no_leftovers(state_root, [*killed_clusters, cluster])


PARALLEL_YAML = """\
name: parallel
sec: [SEC0, SEC1]
net: [NET0]
data: [iid]
seeds: [0, 1]
workload: {clients: 2, rounds: 2, eval_every: 2}
"""


def _most_at_once(windows: list[tuple[float, float]]) -> int:
    """The largest number of [start, end] windows that overlap at one instant."""
    edges = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows])
    now = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
@pytest.mark.privileged
def test_parallel_runs_cells_two_at_a_time_in_their_own_namespaces(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    state_root, out, args = _matrix_run(pytester, monkeypatch, data_dir, tmp_path, PARALLEL_YAML)
    result = pytester.runpytest_subprocess(*args, "--ztfl-parallel=2", timeout=RUN_TIMEOUT)
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, text + result.stderr.str()
    result.assert_outcomes(passed=5)  # 4 cells, SEC1 pooled
    cells = ["SEC0-NET0-iid-s0", "SEC0-NET0-iid-s1", "SEC1-NET0-iid-s0", "SEC1-NET0-iid-s1"]
    # Tests report in the design's order whatever order the pool finished the blocks in.
    design = json.loads((out / "design.json").read_text())
    passed = [line for line in result.outlines if "::test_fl[" in line and "PASSED" in line]
    assert [line.split("[", 1)[1].split("]", 1)[0] for line in passed] == [
        a for b in design["blocks"] for a in b["arms"]
    ]
    rows = {r["cell"]["id"]: r for r in read_jsonl(out / "runs.jsonl")}
    assert sorted(rows) == cells
    for cid, row in rows.items():
        assert row["success"] is True and row["error"] is None, (cid, row["success_reason"])
        assert row["backend"]["parallel"] == 2
        assert all(p["passed"] for p in row["proofs"]), row["proofs"]
        # each cell's own namespace: its live lines are tagged with its id
        assert f"{cid}: round 1:" in text, text
    # Two blocks at a time (each of two cells deployed together): never more, and the pool
    # did overlap them.
    windows = [(r["started_wall"], r["finished_wall"]) for r in rows.values()]
    assert _most_at_once(windows) == 4, windows
    cluster = backend_cluster_name(result.outlines)
    assert cluster is not None, text
    _assert_no_leftovers(state_root, [cluster])
