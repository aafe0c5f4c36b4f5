"""ResultStore: cell files are the truth; runs.jsonl and rounds.csv always equal them."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pytest_ztfl.results import ResultStore

MATRIX = {"name": "t", "cells": 3}


def _row(cid: str, finished: float, rounds: int = 2) -> dict[str, Any]:
    rd = {"round": 0, "ok": True, "duration": 1.0, "participants": 2, "selected": 2,
          "failures": {}, "bytes_down": 1, "bytes_up": 1, "max_train_seconds": 0.5,
          "aggregation_seconds": 0.01}
    return {"cell": {"id": cid, "sec": "SEC0", "net": "NET0", "data": "iid", "seed": 0,
                     "mtls": None},
            "finished_wall": finished,
            "metrics": {"rounds": [{**rd, "round": k} for k in range(rounds)]}}


def _derived(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    runs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    with (out / "rounds.csv").open() as f:
        return runs, list(csv.DictReader(f))


def _cells(out: Path) -> list[dict[str, Any]]:
    rows = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    return sorted(rows, key=lambda r: r["finished_wall"])


def test_derived_tables_follow_saves_updates_and_a_resumed_store(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = ResultStore(out)
    store.prepare(MATRIX, resume=False)
    a, b = _row("A", 2.0), _row("B", 1.0, rounds=3)
    store.save(a, b"{}\n")
    store.save(b, b"{}\n")
    a["slo"] = [{"verdict": "pass"}]
    store.update(a)
    runs, rounds = _derived(out)
    assert runs == _cells(out)
    assert [r["cell"]["id"] for r in runs] == ["B", "A"]  # oldest first
    assert runs[1]["slo"] == [{"verdict": "pass"}]
    assert [r["cell"] for r in rounds] == ["B"] * 3 + ["A"] * 2

    b["metrics"]["rounds"].clear()  # the caller's later edits are not stored by the next save
    store.save(_row("C", 3.0), b"{}\n")
    runs, rounds = _derived(out)
    assert runs == _cells(out)
    assert len(rounds) == 3 + 2 + 2

    resumed = ResultStore(out)
    resumed.prepare(MATRIX, resume=True)
    resumed.save(_row("D", 4.0, rounds=1), b"{}\n")
    runs, rounds = _derived(out)
    assert runs == _cells(out)
    assert [r["cell"]["id"] for r in runs] == ["B", "A", "C", "D"]
    assert len(rounds) == 3 + 2 + 2 + 1


def test_a_fresh_prepare_forgets_the_previous_rows(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = ResultStore(out)
    store.prepare(MATRIX, resume=False)
    store.save(_row("A", 1.0), b"")
    store.prepare(MATRIX, resume=False)
    store.save(_row("B", 2.0), b"")
    runs, _ = _derived(out)
    assert [r["cell"]["id"] for r in runs] == ["B"]
