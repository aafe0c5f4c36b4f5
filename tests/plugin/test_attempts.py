"""Attempts (pytest_ztfl.attempts): a block is measured again only for a harness reason, at
most ``--ztfl-retries`` times, and every attempt is kept: in ``attempts/`` of the results and
in the rows' ``attempts``, which the report counts against completions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_ztfl import attempts
from pytest_ztfl.report.md.summary import _attempts
from pytest_ztfl.report.model import from_row
from pytest_ztfl.results import ResultStore
from pytest_ztfl.rows import SCHEMA


def _row(cid: str, error: str | None = None, fault: str | None = None,
         run: str = "r1") -> dict[str, Any]:
    return {"cell": {"id": cid, "fault": fault}, "error": error,
            "design": {"block_run": run}}


class Block:
    """A block whose n-th run gives the rows ``plan[n]`` (the last one again after that)."""

    def __init__(self, *plan: list[dict[str, Any]]) -> None:
        self.plan, self.runs = plan, 0

    def __call__(self) -> list[tuple[dict[str, Any], bytes]]:
        rows = self.plan[min(self.runs, len(self.plan) - 1)]
        self.runs += 1
        return [(r, b"{}\n") for r in rows]


def test_a_cluster_error_is_measured_again_and_every_attempt_kept() -> None:
    block = Block(
        [_row("A", "cluster: pod fl-client-2 not ready in 180 s", run="r1"), _row("B", run="r1")],
        [_row("A", run="r2"), _row("B", run="r2")],
    )
    told: list[tuple[int, list[str]]] = []
    done = attempts.measure(block, retries=2, on_retry=lambda n, why: told.append((n, why)))
    assert block.runs == 2 and done.count == 2
    assert told == [(1, ["A: cluster: pod fl-client-2 not ready in 180 s"])]
    assert [r["design"]["block_run"] for r, _ in done.results] == ["r2", "r2"]
    assert done.history("A") == [
        {"attempt": 1, "block_run": "r1", "error": "cluster: pod fl-client-2 not ready in 180 s"},
        {"attempt": 2, "block_run": "r2", "error": None},
    ]
    assert [a["attempt"] for a in done.history("B")] == [1, 2]  # the whole block ran again


def test_retries_run_out() -> None:
    block = Block([_row("A", "cluster: timeout")])
    done = attempts.measure(block, retries=2)
    assert block.runs == 3 and done.count == 3
    assert done.results[0][0]["error"] == "cluster: timeout"  # the last attempt counts


@pytest.mark.parametrize(
    "row",
    [
        _row("A", "proof of enforcement failed: rogue-pod-blocked (expected blocked): reached"),
        _row("A", "netem: the delay line died"),
        _row("A", "cluster: the client was killed", fault="client-kill"),
        _row("A"),  # failed rounds or an SLO: results, not the harness
    ],
    ids=["failed-proof", "netem", "fault-cell", "no-error"],
)
def test_what_a_run_found_is_never_measured_again(row: dict[str, Any]) -> None:
    block = Block([row])
    done = attempts.measure(block, retries=3)
    assert block.runs == 1 and done.count == 1 and attempts.harness_failure(row) is None


def test_no_retries_by_default() -> None:
    block = Block([_row("A", "cluster: timeout")], [_row("A")])
    assert attempts.measure(block, retries=0).count == 1 and block.runs == 1


def test_attempts_are_stored_apart_and_forgotten_with_their_cell(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.prepare({"name": "t"}, resume=False)
    row = {**_row("SEC0-NET0-iid-s0", "cluster: timeout"), "finished_wall": 1.0,
           "metrics": {"rounds": []}}
    store.save_attempt(row, b'{"event": "run_start"}\n', 1)
    kept = json.loads((tmp_path / "attempts" / "SEC0-NET0-iid-s0.1.json").read_text())
    assert kept["attempt"] == 1 and kept["error"] == "cluster: timeout"
    assert kept["events_file"] == "attempts/SEC0-NET0-iid-s0.1.jsonl"
    assert (tmp_path / kept["events_file"]).read_bytes() == b'{"event": "run_start"}\n'
    assert not list((tmp_path / "cells").glob("*.json"))  # never a row of the tables
    # a fresh run of the same matrix measuring that cell again forgets its old attempts only
    store.save_attempt({**row, "cell": {"id": "SEC0-NET0-iid-s0-aa"}}, b"", 1)
    store.prepare({"name": "t"}, resume=False, measuring=["SEC0-NET0-iid-s0"])
    assert sorted(p.name for p in (tmp_path / "attempts").iterdir()) == [
        "SEC0-NET0-iid-s0-aa.1.json", "SEC0-NET0-iid-s0-aa.1.jsonl"]


def test_the_report_counts_attempts_against_completions() -> None:
    base = {"schema": SCHEMA, "success": True, "metrics": {"rounds_planned": 1, "rounds": [
        {"round": 1, "ok": True, "duration": 1.0, "selected": 2, "failures": {}}]}}

    def run(cid: str, history: list[dict[str, Any]] | None) -> Any:
        cell = {"id": cid, "sec": "SEC0", "net": "NET0", "data": "iid", "seed": 0}
        return from_row({**base, "cell": cell, **({"attempts": history} if history else {})},
                        f"cells/{cid}.json")

    once = run("A", None)
    twice = run("B", [{"attempt": 1, "block_run": "r1", "error": "cluster: timeout"},
                      {"attempt": 2, "block_run": "r2", "error": None}])
    assert once.attempts == ((1, None),)
    assert _attempts([once]) == "**Attempts**: 1 for 1 rows (none measured again: " \
        "`--ztfl-retries`)."
    assert _attempts([once, twice]) == (
        "**Attempts**: 3 for 2 rows; measured again for a harness reason: `B` 2 "
        "(cluster: timeout) (`attempts/`).")


def test_keep_stores_earlier_attempts_apart_and_the_last_as_the_row(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.prepare({"name": "t"}, resume=False)

    def row(error: str | None, run: str) -> dict[str, Any]:
        return {**_row("SEC0-NET0-iid-s0", error, run=run), "finished_wall": 1.0,
                "metrics": {"rounds": []}}

    done = attempts.measure(Block([row("cluster: timeout", "r1")], [row(None, "r2")]), 1)
    kept = done.keep(store)
    assert [r["design"]["block_run"] for r in kept] == ["r2"]
    stored = json.loads((tmp_path / "cells" / "SEC0-NET0-iid-s0.json").read_text())
    assert [a["block_run"] for a in stored["attempts"]] == ["r1", "r2"]
    assert json.loads((tmp_path / "attempts" / "SEC0-NET0-iid-s0.1.json").read_text())[
        "design"]["block_run"] == "r1"
    assert attempts.again("NET0-iid-s0", 1, ["A: cluster: timeout"]) == (
        "block NET0-iid-s0: attempt 1 failed for a harness reason (A: cluster: timeout); "
        "measuring the block again")
