"""ResultStore: cell files are the truth; runs.jsonl and rounds.csv always equal them; a fresh
run replaces only the cells it measures, and another matrix's results are moved beside."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_ztfl.calibration import free_name
from pytest_ztfl.results import ResultsError, ResultStore

MATRIX = {"name": "t", "cells": 3}


def _row(cid: str, finished: float, rounds: int = 2, calibration: str | None = None
         ) -> dict[str, Any]:
    rd = {"round": 0, "ok": True, "duration": 1.0, "participants": 2, "selected": 2,
          "failures": {}, "bytes_down": 1, "bytes_up": 1, "max_train_seconds": 0.5,
          "aggregation_seconds": 0.01}
    return {"cell": {"id": cid, "sec": "SEC0", "net": "NET0", "data": "iid", "seed": 0,
                     "mtls": None},
            "finished_wall": finished,
            "overlays": {"net": {"calibration": {"ref": calibration, "passed": True}}},
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


def test_a_fresh_prepare_forgets_only_the_cells_it_will_measure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = ResultStore(out)
    store.prepare(MATRIX, resume=False, measuring=["A", "B"])
    store.save(_row("A", 1.0), b"a")
    store.save(_row("B", 2.0), b"b")
    again = ResultStore(out)
    again.prepare(MATRIX, resume=False, measuring=["B"])
    runs, _ = _derived(out)
    assert [r["cell"]["id"] for r in runs] == ["A"]  # the tables hold exactly the rows kept
    assert (out / "events" / "A.jsonl").read_bytes() == b"a"
    assert not (out / "events" / "B.jsonl").exists()
    again.save(_row("C", 3.0), b"")
    assert [r["cell"]["id"] for r in _derived(out)[0]] == ["A", "C"]


def test_calibrations_stay_while_a_kept_row_names_them(tmp_path: Path) -> None:
    """A resumed run keeps every calibration and a later sitting takes the next free name; a
    fresh run removes those no kept row references (its profiles are calibrated anew), never
    one a kept row was measured against."""
    out = tmp_path / "out"
    cal = out / "calibration"
    store = ResultStore(out)
    store.prepare(MATRIX, resume=False, measuring=["A", "B", "C"])
    store.save(_row("A", 1.0, calibration="calibration/NET0.json"), b"a")
    store.save(_row("B", 2.0, calibration="calibration/NET0.2.json"), b"b")
    store.save(_row("C", 3.0, calibration="calibration/NET2.json"), b"c")
    cal.mkdir()
    for name in ("NET0.json", "NET0.2.json", "NET2.json", "NET2.2.json"):
        (cal / name).write_text("{}")
    ResultStore(out).prepare(MATRIX, resume=True, measuring=["D"])
    assert len(list(cal.iterdir())) == 4
    assert free_name(cal, "NET0") == cal / "NET0.3.json"
    assert free_name(cal, "NET4") == cal / "NET4.json"
    ResultStore(out).prepare(MATRIX, resume=False, measuring=["B", "C"])
    assert sorted(p.name for p in cal.iterdir()) == ["NET0.json"]  # A's; NET0.2 was B's
    assert free_name(cal, "NET0") == cal / "NET0.2.json"


def test_a_fresh_prepare_of_another_matrix_moves_the_old_results_beside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = ResultStore(out)
    store.prepare(MATRIX, resume=False, measuring=["A"])
    store.save(_row("A", 1.0), b"a")
    (out / "report").mkdir()  # not the store's: stays where it is
    (out / "report" / "report.md").write_text("# kept")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = {**MATRIX, "name": "another"}
    ResultStore(out).prepare(other, resume=False, measuring=["B"])
    prev = tmp_path / "out.prev"
    moved = {p.relative_to(prev): p.read_bytes() for p in prev.rglob("*") if p.is_file()}
    assert moved == {k: v for k, v in before.items() if k.parts[0] != "report"}
    assert (out / "report" / "report.md").read_text() == "# kept"
    assert json.loads((out / "matrix.json").read_text()) == other
    assert list((out / "cells").iterdir()) == []
    with pytest.raises(ResultsError, match="different matrix"):
        ResultStore(out).prepare(MATRIX, resume=True)


def test_checks_touch_nothing_and_name_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "a" / "b"
    ResultStore(missing).check(MATRIX, resume=True)
    assert not (tmp_path / "a").exists()
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(ResultsError, match=r"^--ztfl-out=.*/file/out: not writable \(Not a dir"):
        ResultStore(afile / "out").check(MATRIX, resume=False)
