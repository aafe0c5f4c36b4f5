"""The report's *Where the run's time went*: the run window split into the block runs' phases
and the time between blocks, with the measured rounds' share (pure logic, synthetic rows)."""

from __future__ import annotations

import json
from pathlib import Path

from report_synth import build_results, matrix

from pytest_ztfl.report import write

T0 = 1_790_000_000.0
PHASES = {"deploy": 4.0, "prove": 10.0, "start": 1.0, "joined": 3.0, "rounds": 40.0,
          "finish": 1.0, "collect": 0.5, "cleanup": 0.5}  # 60 s per block run


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _row(body: str, phase: str) -> list[str]:
    line = next(x for x in body.splitlines() if x.startswith(f"| {phase} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _results(tmp_path: Path, second_block_at: float, phases: bool = True,
             net2_phases: dict[str, float] | None = None) -> tuple[Path, float]:
    """Two block runs (NET0 and NET2, SEC0 and SEC3 each) of 60 s, the first at T0 and the
    second ``second_block_at`` s later; returns the directory and the completed rounds' sum."""
    results = tmp_path / "results"
    build_results(results, matrix(data=("iid",), seeds=(0,)), design=True)
    measured = 0.0
    for path in (results / "cells").glob("*.json"):
        row = json.loads(path.read_text())
        start = T0 + (second_block_at if row["cell"]["net"] == "NET2" else 0.0)
        row["started_wall"], row["finished_wall"] = start, start + 60.0
        if phases:
            row["design"]["phases"] = (net2_phases or PHASES) if row["cell"]["net"] == "NET2" \
                else PHASES
        else:
            row["design"].pop("phases", None)
        measured += sum(rd["duration"] for rd in row["metrics"]["rounds"] if rd["ok"])
        path.write_text(json.dumps(row))
    return results, measured


def test_the_run_window_is_split_into_phases_and_the_time_between_blocks(
        tmp_path: Path) -> None:
    results, measured = _results(tmp_path, second_block_at=100.0)
    text = write(results, tmp_path / "report").read_text(encoding="utf-8")
    assert text.index("## Measurement design") < text.index("## Where the run's time went")
    body = _section(text, "Where the run's time went")
    assert "one set per block run: 2" in body
    # window 160 s: two blocks of 60 s and 40 s between them
    assert _row(body, "deploy")[2:] == ["8.0", "5.0%"]
    assert _row(body, "prove")[2:] == ["20.0", "12.5%"]
    assert _row(body, "rounds")[2:] == ["80.0", "50.0%"]
    assert _row(body, "between blocks")[2:] == ["40.0", "25.0%"]
    assert _row(body, "run window")[2:] == ["160.0", "100.0%"]
    assert measured > 0
    assert _row(body, "of which measured rounds")[2:] == [
        f"{measured:.1f}", f"{100 * measured / 160:.1f}%"]


def test_overlapping_blocks_give_sums_but_no_shares(tmp_path: Path) -> None:
    results, _ = _results(tmp_path, second_block_at=30.0)  # window 90 s, blocks 120 s
    body = _section(write(results, tmp_path / "report").read_text(encoding="utf-8"),
                    "Where the run's time went")
    assert "The blocks overlapped" in body
    assert _row(body, "prove")[2:] == ["20.0", "-"]
    assert "| between blocks |" not in body


def test_rows_without_phases_say_so(tmp_path: Path) -> None:
    results, _ = _results(tmp_path, second_block_at=100.0, phases=False)
    body = _section(write(results, tmp_path / "report").read_text(encoding="utf-8"),
                    "Where the run's time went")
    assert "Not recorded: no row carries its block run's phases" in body


def test_a_calibration_run_aside_is_its_own_phase(tmp_path: Path) -> None:
    """A profile calibrated while its first block's pods started (pytest_ztfl.calibration):
    the block's wait for it is the phase *calibrated*, and the text no longer puts the
    calibrations between blocks or before the window."""
    net2 = {**PHASES, "rounds": 35.0, "calibrated": 5.0}  # still 60 s
    results, _ = _results(tmp_path, second_block_at=100.0, net2_phases=net2)
    body = _section(write(results, tmp_path / "report").read_text(encoding="utf-8"),
                    "Where the run's time went")
    assert _row(body, "calibrated")[2:] == ["5.0", "3.1%"]
    assert _row(body, "rounds")[2:] == ["75.0", "46.9%"]
    assert "calibrating a profile" not in _row(body, "between blocks")[1]
    assert "first profile's calibration" not in body
    # without the phase (rows of before), both are where the calibrations were
    old, _ = _results(tmp_path / "old", second_block_at=100.0)
    body = _section(write(old, tmp_path / "old-report").read_text(encoding="utf-8"),
                    "Where the run's time went")
    assert "calibrating a profile" in _row(body, "between blocks")[1]
    assert "first profile's calibration" in body
