"""report.md's *Summary*, first: its numbers are the tables' below (overhead, TTA, failures,
proofs, the instrument's checks), the data source is said plainly from the rows (or, in rows
stored before the field, their event logs), and a pass/fail table collapses to its count with
the exceptions listed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from report_synth import build_results, matrix

from pytest_ztfl.analysis import gates
from pytest_ztfl.report import load, write
from pytest_ztfl.report.calc import Analysis, analyse
from pytest_ztfl.report.md.common import collapsed

FAULTY = "SEC3-NET2-noniid-s1"
Made = tuple[str, Analysis]
SMALL = {"net": ("NET0",), "data": ("iid",), "seeds": (0,)}  # SEC0 and SEC3: 2 cells


def _make(root: Path, m: Any = None, **kw: Any) -> Made:
    results = root / "results"
    build_results(results, m, **kw)
    return _text(results, root), analyse(load.load(results))


def _text(results: Path, root: Path) -> str:
    return write(results, root / "report").read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _tables(body: str) -> list[list[list[str]]]:
    """Every Markdown table in ``body``: its rows (header first) as lists of cells."""
    tables: list[list[list[str]]] = []
    rows: list[list[str]] = []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            if not set(line) <= {"|", "-"}:
                rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _bullet(body: str, start: str) -> str:
    return next(x for x in body.splitlines() if x.startswith(f"- {start}"))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return _make(tmp_path_factory.mktemp("faulty"),
                 faults={FAULTY: {"fail_rounds": frozenset({5}), "timeouts": 1}})


def test_the_summary_comes_first(faulty: Made) -> None:
    assert faulty[0].split("\n## ")[1].startswith("Summary\n")


def test_the_summarys_overhead_and_tta_are_the_cell_groups_numbers(faulty: Made) -> None:
    text, a = faulty
    cost, tta = _tables(_section(text, "Summary"))
    groups = _tables(_section(text, "Cell groups (pooled over seeds)"))[0]
    by = {tuple(r[:3]): r for r in groups[1:]}
    p50 = groups[0].index("p50 vs SEC0 [95% CI] (MDE)")
    mean_tta = groups[0].index("mean TTA s [95% CI]")
    assert cost[0] == ["NET", "data", "SEC3"]
    compared = 0
    for net, data, cell in cost[1:]:
        value, _, word = cell.rpartition(": ")
        assert by["SEC3", net, data][p50].startswith(value + ", ")  # then "N blocks"
        r = a.groups["SEC3", net, data].ratios[0]
        assert word == ("slower" if r.ci_low > 1 else "faster" if r.ci_high < 1
                        else "no change resolved")
        compared += 1
    assert compared == 4  # NET0/NET2 x iid/dirichlet-0.5
    assert tta[0] == ["NET", "data", "SEC0", "SEC3"]
    for net, data, *cells in tta[1:]:
        for sec, cell in zip(tta[0][2:], cells, strict=True):
            assert cell == by[sec, net, data][mean_tta]


def test_the_summarys_failures_are_the_cells_tables(faulty: Made) -> None:
    text = faulty[0]
    cells = _tables(_section(text, "Cells"))[0]
    col = cells[0].index("rounds ok/planned")
    ok_planned = [tuple(map(int, r[col].split("/"))) for r in cells[1:]]
    failed = sum(p - o for o, p in ok_planned)
    planned = sum(p for _, p in ok_planned)
    assert (failed, planned) == (1, 192)
    g = gates.failure_rate_gate(failed, planned)
    assert _bullet(_section(text, "Summary"), "**Failures**") == (
        f"- **Failures**: 1 of 192 planned rounds failed ({100 * g.estimate:.3g}% "
        f"[{100 * g.ci_low:.3g}%, {100 * g.ci_high:.3g}%], Clopper-Pearson), in `{FAULTY}` (1); "
        f"15 of 16 cells successful, not `{FAULTY}` (1 rounds had too few participants); "
        "failure events mtls=3, unclassified=1.")


def test_the_summarys_proofs_are_the_cells_tables(faulty: Made) -> None:
    text = faulty[0]
    cells = _tables(_section(text, "Cells"))[0]
    col = cells[0].index("proofs passed")
    counted = [tuple(map(int, r[col].split("/"))) for r in cells[1:] if "/" in r[col]]
    passed, total = sum(p for p, _ in counted), sum(t for _, t in counted)
    assert (passed, total, len(counted)) == (16, 16, 8)
    assert _bullet(_section(text, "Summary"), "**Proofs") == (
        "- **Proofs of enforcement**: 16 of 16 passed in 8 rows; 8 rows without proofs "
        "recorded.")


def test_a_failed_proof_is_named_in_the_summary(tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(**SMALL))
    path = results / "cells" / "SEC3-NET0-iid-s0.json"
    row = json.loads(path.read_text())
    row["proofs"][0]["passed"] = False
    path.write_text(json.dumps(row))
    assert _bullet(_section(_text(results, tmp_path), "Summary"), "**Proofs") == (
        "- **Proofs of enforcement**: 1 of 2 passed in 1 row; failed: `SEC3-NET0-iid-s0`: "
        "rogue-pod-blocked (those rows enter no comparison); 1 row without proofs recorded.")


def test_without_check_arms_the_summary_says_so_and_gives_the_mdes(faulty: Made) -> None:
    text, a = faulty
    summary = _section(text, "Summary")
    mdes = [g.ratios[0].mde for g in a.groups.values() if g.ratios]
    low, high = f"{min(mdes):.1%}", f"{max(mdes):.1%}"
    span = low if low == high else f"{low} to {high}"
    assert _bullet(summary, "**A/A") == (
        "- **A/A and known delay**: not measured (no check arms: `--ztfl-checks=aa,delay10ms` "
        f"adds them); the comparisons above could see changes of {span} (their MDEs).")
    assert f"(MDE {low})" in summary and f"(MDE {high})" in summary
    assert "- **NET calibration**: not recorded." in summary
    assert "- **Event logs**: 16 of 16 rows match the event log they came from" in summary
    assert "- **Data**: `synthetic` (as recorded), in all 16 rows." in summary


def test_the_summarys_check_arms_are_the_instrument_sections(tmp_path: Path) -> None:
    text, _ = _make(tmp_path, matrix(net=("NET0",), data=("iid",), seeds=(0, 1),
                                     checks=("aa", "delay50ms")), design=True, jitter=0.03)
    summary = _section(text, "Summary")
    checks = _section(text, "Instrument checks")
    aa = _tables(checks)[0]
    pooled = next(r for r in aa if r[0] == "**all aa arms**")
    ratio = pooled[aa[0].index("median ratio [95% CI]")]
    alarms = re.search(r"False alarms: (\d+) of (\d+) blocks", checks)
    assert alarms is not None
    line = _bullet(summary, "**A/A**")
    assert line.startswith(f"- **A/A** (SEC0 against itself): {alarms[1]} false alarm(s) in "
                           f"{alarms[2]} blocks; pooled {ratio} (MDE ")
    assert line.endswith(f": {pooled[-1]}.")  # the pooled verdict
    found = re.search(r"Found in the round's duration in (\d+) of (\d+) blocks; in the path "
                      r"time in (\d+) of (\d+) blocks", checks)
    assert found is not None
    assert _bullet(summary, "**Known delay 50ms**").startswith(
        f"- **Known delay 50ms**: found in the round in {found[1]} of {found[2]} blocks, in the "
        f"path time in {found[3]} of {found[4]}; median path difference +")


OFFLINE = ("not full MNIST but its offline test split: the 10,000 test images, split by the "
           "project into 8,000 for training and 2,000 for testing (`fl_app/data.py`)")


def test_the_data_source_is_said_plainly_from_rows_or_their_event_logs(tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(**SMALL), data_source="offline-test-split")
    paths = sorted((results / "cells").glob("*.json"))
    for path in paths:  # rows stored before metrics.data_source: the event log names it
        row = json.loads(path.read_text())
        assert row["metrics"].pop("data_source") == "offline-test-split"
        path.write_text(json.dumps(row))
    summary = _section(_text(results, tmp_path), "Summary")
    assert f"- **Data**: {OFFLINE}, in all 2 rows." in summary

    row = json.loads(paths[0].read_text())
    row["metrics"]["data_source"] = "full"  # the row wins over its event log
    paths[0].write_text(json.dumps(row))
    summary = _section(_text(results, tmp_path), "Summary")
    assert ("- **Data**: full MNIST (its 60,000 training and 10,000 test images) in 1 row; "
            f"{OFFLINE} in 1 row.") in summary


def test_collapsed_keeps_the_exceptions_only() -> None:
    rows = [["a", "PASS"], ["b", "FAIL"], ["c", "PASS"], ["d", "INCONCLUSIVE"]]
    out = collapsed(("cell", "verdict"), rows, lambda r: r[1] == "PASS", "verdicts")
    assert out[0] == "2 of 4 verdicts PASS; the other 2:"
    assert out[2:] == ["| cell | verdict |", "|---|---|", "| b | FAIL |", "| d | INCONCLUSIVE |"]
    assert collapsed(("cell", "verdict"), rows[:1], lambda r: r[1] == "PASS", "verdicts") == [
        "All 1 verdicts PASS."]


def _slo(verdict: str) -> dict[str, Any]:
    return {"metric": "median round duration SEC3/SEC0", "verdict": verdict,
            "message": f"{verdict.upper()} median 1.02x"}


def test_an_all_pass_slo_table_is_a_count_and_its_exceptions_are_listed(tmp_path: Path) -> None:
    m = matrix(net=("NET0", "NET2"), data=("iid",), seeds=(0,))
    passing = {c: [_slo("pass")] for c in ("SEC0-NET0-iid-s0", "SEC0-NET2-iid-s0",
                                           "SEC3-NET0-iid-s0", "SEC3-NET2-iid-s0")}
    text, _ = _make(tmp_path / "pass", m, slo=passing)
    body = _section(text, "SLO verdicts")
    assert "All 4 verdicts PASS." in body.splitlines()
    assert not _tables(body)
    assert "- **SLO verdicts** stored in the rows: PASS 4." in _section(text, "Summary")

    mixed = {**passing, "SEC3-NET2-iid-s0": [_slo("pass"), _slo("inconclusive")]}
    text, _ = _make(tmp_path / "mixed", m, slo=mixed)
    body = _section(text, "SLO verdicts")
    assert "4 of 5 verdicts PASS; the other 1:" in body.splitlines()
    (table,) = _tables(body)
    assert table[1:] == [["`SEC3-NET2-iid-s0`", "median round duration SEC3/SEC0",
                          "INCONCLUSIVE", "INCONCLUSIVE median 1.02x"]]
    assert "- **SLO verdicts** stored in the rows: PASS 4, INCONCLUSIVE 1." in _section(
        text, "Summary")
