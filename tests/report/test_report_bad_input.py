"""Damaged or empty results: one-line errors, partial reports with a visible note."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_synth import build_results, matrix

from pytest_ztfl.report import ReportError, load, main_report, write
from pytest_ztfl.report.calc import analyse
from pytest_ztfl.report.model import RowError, from_row

SMALL = {"net": ("NET0", "NET2"), "data": ("iid",), "seeds": (0,)}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "results"
    build_results(out, matrix(**SMALL))
    return out


@pytest.fixture
def results(pristine: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(pristine, out)
    return out


def _error(capsys: pytest.CaptureFixture[str], results: Path, out: Path) -> str:
    assert main_report(str(results), str(out)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err  # one line, no traceback
    assert lines[0].startswith("ztfl report: error: ")
    return lines[0]


def test_truncated_cell_file_gives_a_partial_report_with_a_note(results: Path) -> None:
    bad = results / "cells" / "SEC3-NET2-iid-s0.json"
    bad.write_bytes(bad.read_bytes()[:300])
    text = write(results, results / "report").read_text(encoding="utf-8")
    assert "Partial or qualified report" in text
    assert "`cells/SEC3-NET2-iid-s0.json`: corrupt JSON" in text and "cell skipped" in text
    assert "3 of 4 have a result; without a usable result: SEC3-NET2-iid-s0" in text
    cells = text[text.index("## Cells"):text.index("## Cell groups")]
    assert "`SEC3-NET2-iid-s0`" not in cells and "`SEC3-NET0-iid-s0`" in cells
    # The interaction needs SEC3 x NET2, which is now missing: said, not invented.
    assert "not measured in this run" in text
    for fig in ("p99_heatmap.png", "tta.png"):
        assert (results / "report" / fig).stat().st_size > 10_000


def test_row_missing_a_required_field_is_skipped_by_name(results: Path) -> None:
    path = results / "cells" / "SEC0-NET2-iid-s0.json"
    row = json.loads(path.read_text())
    del row["metrics"]["rounds"][3]["duration"]
    path.write_text(json.dumps(row))
    text = write(results, results / "report").read_text(encoding="utf-8")
    assert ("`cells/SEC0-NET2-iid-s0.json`: metrics.rounds[3].duration is missing or not a "
            "finite number >= 0; cell skipped") in text
    # Its SEC3 partner has no baseline now, and says so.
    assert "n/a (no SEC0 cell with NET2, iid, seed 0)" in text


def test_truncated_event_log_is_flagged_and_the_row_still_reported(results: Path) -> None:
    ev = results / "events" / "SEC0-NET0-iid-s0.jsonl"
    ev.write_bytes(ev.read_bytes()[:-40])
    text = write(results, results / "report").read_text(encoding="utf-8")
    assert "cell SEC0-NET0-iid-s0: event log unreadable: events/SEC0-NET0-iid-s0.jsonl:" in text
    line = next(x for x in text.splitlines() if x.startswith("| `SEC0-NET0-iid-s0`"))
    assert line.endswith("| unreadable |")


def test_a_censoring_time_without_a_usable_event_log_is_noted_under_the_groups(
        results: Path) -> None:
    """A run that never reached the target and whose event log is unusable is censored at
    its summed round durations (a lower bound); the groups section says so for its group."""
    cell = results / "cells" / "SEC0-NET2-iid-s0.json"
    row = json.loads(cell.read_text())
    row["metrics"]["tta_seconds"] = None
    cell.write_text(json.dumps(row))
    ev = results / "events" / "SEC0-NET2-iid-s0.jsonl"
    ev.write_bytes(ev.read_bytes()[:-40])
    text = write(results, results / "report").read_text(encoding="utf-8")
    assert ("- TTA of SEC0/NET2/iid: 1 censoring time(s) from summed round durations "
            "(event log unusable)") in text
    assert "TTA of SEC0/NET0/iid" not in text


def test_event_log_that_disagrees_with_the_row_is_flagged(results: Path) -> None:
    ev = results / "events" / "SEC3-NET0-iid-s0.jsonl"
    lines = ev.read_text().splitlines()
    ev.write_text("\n".join(x for x in lines if '"round_end"' not in x or '"round":4,' not in x))
    text = write(results, results / "report").read_text(encoding="utf-8")
    assert "cell SEC3-NET0-iid-s0: event log mismatch" in text


def test_runs_jsonl_alone_is_enough_and_bad_lines_are_named(results: Path) -> None:
    shutil.rmtree(results / "cells")
    runs = results / "runs.jsonl"
    lines = runs.read_text().splitlines()
    runs.write_text("\n".join([lines[0][:50], *lines[1:]]) + "\n")
    text = write(results, results / "report").read_text(encoding="utf-8")
    assert "3 cells read from runs.jsonl" in text
    assert "`runs.jsonl:1`: corrupt JSON" in text
    assert "Source: `runs.jsonl` (no `cells/` files)" in text  # the tables name their source
    assert "Source: `cells/<id>.json`" not in text


def test_a_one_run_group_has_its_cells_interval_to_the_last_digit(pristine: Path) -> None:
    """One seed per group: the group's bootstrap uses the cell's seed, as the cell row does."""
    a = analyse(load.load(pristine))
    assert a.groups and all(len(g.runs) == 1 for g in a.groups.values())
    by_id = {c.run.id: c for c in a.cells}
    for g in a.groups.values():
        assert g.summary == by_id[g.runs[0].id].summary
        assert g.ratios == by_id[g.runs[0].id].ratios  # vs SEC0 too (empty for SEC0 itself)
    assert any(g.ratios for g in a.groups.values())


def test_corrupt_matrix_json_loses_only_the_matrix_metadata(results: Path) -> None:
    (results / "matrix.json").write_text('{"name": "x", "sec": ["SEC9"]')
    text = write(results, results / "report").read_text(encoding="utf-8")
    assert "`matrix.json`: unusable" in text
    assert "4 with a result (matrix.json unusable)" in text


def test_every_cell_file_corrupt_is_an_error_naming_a_file(
        results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for p in (results / "cells").glob("*.json"):
        p.write_text("{")
    line = _error(capsys, results, tmp_path / "rep")
    assert "none of the 4 files in cells/ holds a usable result row" in line
    assert "cells/SEC0-NET0-iid-s0.json: corrupt JSON" in line


def test_empty_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    line = _error(capsys, tmp_path / "empty", tmp_path / "rep")
    assert "no results to report (no cells/*.json and no runs.jsonl)" in line
    with pytest.raises(ReportError, match="no results to report"):
        write(tmp_path / "empty", tmp_path / "rep")


def test_missing_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error(capsys, tmp_path / "nope", tmp_path / "rep")
    assert line.endswith("nope: no such results directory")


def test_unwritable_report_directory_is_an_error(
        results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _error(capsys, results, blocker / "report")
    assert "cannot create the report directory" in line


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(path=st.lists(st.sampled_from(["cell", "metrics", "rounds", 0, "duration", "ok", "seed",
                                      "success", "schema", "accuracy_by_round", "overlays",
                                      "proofs", "failures_by_class", "rounds_planned"]),
                     min_size=1, max_size=4),
       value=JSON)
def test_any_mutation_of_a_row_is_accepted_or_rejected_cleanly(
        pristine: Path, path: list[str | int], value: object) -> None:
    row = json.loads(next((pristine / "cells").glob("*.json")).read_text())
    target = row
    for key in path[:-1]:
        nxt = target.get(key) if isinstance(target, dict) else (
            target[key] if isinstance(target, list) and isinstance(key, int)
            and key < len(target) else None)
        if not isinstance(nxt, dict | list):
            break
        target = nxt
    if isinstance(target, dict):
        target[path[-1]] = value
    try:
        run = from_row(row, "cells/x.json")
    except RowError as exc:
        assert "\n" not in str(exc)
        return
    assert all(d >= 0 for d in run.durations)


def test_load_reads_cells_and_checks_events(pristine: Path) -> None:
    loaded = load.load(pristine)
    assert len(loaded.runs) == 4 and loaded.notes == ()
    assert {e.status for e in loaded.events.values()} == {"ok"}
    assert all(e.elapsed and e.elapsed > 0 for e in loaded.events.values())


def test_a_run_without_rounds_and_without_optional_fields_is_reported(results: Path) -> None:
    path = results / "cells" / "SEC3-NET0-iid-s0.json"
    row = json.loads(path.read_text())
    row["metrics"]["rounds"] = []
    row["metrics"]["accuracy_by_round"] = {}
    row["metrics"]["tta_seconds"] = None
    row["success"], row["success_reason"] = False, "the server's event log has no run_end"
    for key in ("overlays", "backend", "environment", "proofs", "failures_by_class"):
        del row[key]
    path.write_text(json.dumps(row))
    text = write(results, results / "report").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("| `SEC3-NET0-iid-s0`"))
    assert "| 0/12 |" in line and "n/a (no completed rounds to compare)" in line
    assert "none recorded" in line
    # Its event log still has 12 rounds: the disagreement is reported, not hidden.
    assert "cell SEC3-NET0-iid-s0: event log mismatch" in text
    # never-run rounds count as failed in the failure rate
    assert "SEC3/NET0 100% [" in text and "| 12 of 12 rounds, 1 cell |" in text
