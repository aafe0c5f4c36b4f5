"""Durability of results: SIGKILL the harness (the pytest process, by PID) at random moments
of a small matrix, several times, then ``--ztfl-resume`` to the end.

After every kill: each stored cell file and each ``runs.jsonl`` line is whole JSON, and a cell
file exists only with its event log. After the final resumed run: the set of cells equals an
uninterrupted run's (the matrix's cell ids, every one successful), nothing but ignorable
``.*.tmp`` names is partial, and the clusters the killed harnesses left behind (network
namespaces, processes) are gone: the next harness start removes them (private state root, so
no other run's clusters are touched). The kill delays are drawn from a seeded RNG; the seed is
printed and can be fixed with ``ZTFL_KILL_SEED``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

MATRIX = """\
name: kill-resume
sec: [SEC0, SEC1]
net: [NET0]
data: [iid]
seeds: [0]
workload: {clients: 2, rounds: 2, max_steps: 5, eval_every: 2, round_deadline: 20,
           target_accuracy: 0.99}
"""
KILLS = 3
RUN_TIMEOUT = 240.0  # a whole 2-cell run takes ~10 s on 2 cores


def _harness(tmp: Path, out: Path, env: dict[str, str], resume: bool) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "pytest", f"--ztfl-matrix={tmp / 'm.yaml'}",
            f"--ztfl-out={out}", "-p", "no:cacheprovider", "-q"]
    if resume:
        argv.append("--ztfl-resume")
    log = open(tmp / "harness.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(argv, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()


def _cluster_names(state_root: Path) -> set[str]:
    return {p.name for p in state_root.iterdir() if p.is_dir()} if state_root.exists() else set()


def _check_whole(out: Path) -> list[str]:
    """Every stored file a reader would open is whole; returns the stored cell ids."""
    ids = []
    for f in sorted((out / "cells").glob("*.json")) if (out / "cells").exists() else []:
        row = json.loads(f.read_text())  # raises on a partial file
        ids.append(row["cell"]["id"])
        assert (out / row["events_file"]).exists(), f"{f.name} without its event log"
        for line in (out / row["events_file"]).read_text().splitlines():
            json.loads(line)
    runs = out / "runs.jsonl"
    if runs.exists():
        text = runs.read_text()
        assert text == "" or text.endswith("\n"), "runs.jsonl ends in a partial line"
        for line in text.splitlines():
            json.loads(line)
    return ids


def _left_by(state_root: Path, names: set[str]) -> dict[str, list[str]]:
    """What of the named clusters is still on the machine: their network namespaces (as their
    state records listed them), their pod processes (marked in their environment) and their
    temporary directories (delay lines', captures')."""
    from k8s_fixtures.local import state

    text = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    live = {line.split()[0] for line in text.splitlines() if line.strip()}
    netns = sorted(live & _RECORDED_NETNS)
    procs = [f"{n}: {pid}" for n in sorted(names)
             for pid in state.marked_pids(f"{state_root}:{n}")]
    dirs = [str(d) for n in sorted(names) for d in state.scratch_dirs(n)]
    return {"netns": netns, "processes": procs, "dirs": dirs}


_RECORDED_NETNS: set[str] = set()


def _record_netns(state_root: Path) -> None:
    for f in state_root.glob("*/state.json") if state_root.exists() else []:
        try:
            _RECORDED_NETNS.update(json.loads(f.read_text()).get("netns", []))
        except ValueError:  # being rewritten by a live harness: read again next time
            continue


def test_sigkilled_harness_resumes_to_the_uninterrupted_set_of_cells(
    tmp_path: Path, data_dir: Path
) -> None:
    from pytest_ztfl import matrix as mx

    seed = int(os.environ.get("ZTFL_KILL_SEED", str(time.time_ns() % 100_000)))
    print(f"ZTFL_KILL_SEED={seed}")
    rng = random.Random(seed)
    (tmp_path / "m.yaml").write_text(MATRIX)
    expected = {c.id for c in mx.load(str(tmp_path / "m.yaml")).cells()}
    out, state_root = tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "ZTFL_DATA_DIR": str(data_dir), "ZTFL_STATE_DIR": str(state_root)}
    killed_clusters: set[str] = set()
    # Kill 1 at a random moment 0-4 s after the first cluster exists (a whole run takes ~10 s:
    # its calibration and first cell), kill 2 at a random moment of the resumed run's start-up
    # or first cell (the resumed runs after them measure what is missing, and kill 2 may come
    # after its run ended); kill 3 a random moment (0-2 s) after every cell is stored
    # (at once if kill 2's run stored them all), so the final run always has nothing to measure
    # and must still purge what the killed harnesses left (a cluster's creation does it when
    # there is a cell to measure; ZTFL_KILL_SEED=99017 once left a namespace on that path).
    windows = [(0.0, 4.0), (2.0, 12.0)]
    stored_after: list[list[str]] = []
    for i in range(KILLS):
        proc = _harness(tmp_path, out, env, resume=i > 0)
        started = time.monotonic()
        if i == 0:
            while not _cluster_names(state_root) and proc.poll() is None:
                assert time.monotonic() < started + RUN_TIMEOUT, "no cluster was started"
                time.sleep(0.05)  # polling interval of a deadline loop
            kill_at = time.monotonic() + rng.uniform(*windows[i])
        elif i < len(windows):
            kill_at = started + rng.uniform(*windows[i])
        else:
            while set(_check_whole(out)) != expected and proc.poll() is None:
                assert time.monotonic() < started + RUN_TIMEOUT, "the cells were not stored in time"
                time.sleep(0.1)  # polling interval of a deadline loop
            kill_at = time.monotonic() + rng.uniform(0.0, 2.0)
        delay = kill_at - started
        try:
            proc.wait(timeout=max(0.0, kill_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # the pytest process only, by PID
            proc.wait(timeout=30)
        killed_clusters |= _cluster_names(state_root)
        _record_netns(state_root)
        stored_after.append(_check_whole(out))
        print(f"kill {i + 1} after {delay:.1f} s (rc {proc.returncode}): stored {stored_after[-1]}")
    final = _harness(tmp_path, out, env, resume=True)
    try:
        rc = final.wait(timeout=RUN_TIMEOUT)
    finally:
        if final.poll() is None:
            os.kill(final.pid, signal.SIGKILL)
            final.wait(timeout=30)
    log = (tmp_path / "harness.log").read_text(errors="replace")
    assert rc == 0, log[-3000:]
    assert set(stored_after[-1]) == expected  # so the final run measured nothing
    ids = _check_whole(out)
    assert set(ids) == expected, (ids, expected)
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted(r["cell"]["id"] for r in rows) == sorted(expected)
    assert all(r["success"] for r in rows), [(r["cell"]["id"], r["success_reason"]) for r in rows]
    # Cells finished before a kill were not measured again (their files are the same rows).
    for earlier in stored_after:
        assert set(earlier) <= set(ids)
    # Leftovers of the killed harnesses: the next start cleaned them (final run tore its own
    # cluster down), so nothing of any of them is left.
    killed_clusters |= _cluster_names(state_root)
    assert killed_clusters, "no cluster was ever started: the kills came too early to matter"
    assert _RECORDED_NETNS, "the killed harnesses recorded no network namespace"
    assert _left_by(state_root, killed_clusters) == {"netns": [], "processes": [], "dirs": []}
    assert _cluster_names(state_root) == set(), "a cluster's state was left behind"
