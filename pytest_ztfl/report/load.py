"""Read a results directory for the report, tolerating damage.

Rows come from ``cells/<id>.json`` (the durable per-cell files), or from ``runs.jsonl`` when a
directory has no ``cells/``. A file that cannot be read or validated costs only its cell: it
becomes a one-line note naming the file and the problem. Each row's event log is re-read and
its round durations compared with the row's, so every number in the report is checked against
the events it came from. Only a directory with no usable row at all is an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fl_app.events import EventLogError, read_events
from fl_app.summary import RunSummary, held_seconds, summarize
from pytest_ztfl import matrix as mx
from pytest_ztfl.report.model import RowError, Run, from_row, run_sort_key
from pytest_ztfl.results import ResultsError


class ReportError(ResultsError):
    """No report can be made from this input; the message is one line naming the cause."""


@dataclass(frozen=True)
class EventsCheck:
    """How a row compares with its raw event log."""

    status: str  # "ok" | "mismatch" | "missing" | "unreadable"
    detail: str
    # Server-clock seconds from the first round_start to run_end (or the last event), less the
    # time the server was held between its rounds while other arms' rounds ran (interleaved
    # blocks): the time a run that never reached its target was observed for, i.e. its TTA
    # censoring time, on the same clock as its time to accuracy.
    elapsed: float | None = None
    data_source: str | None = None  # run_start.data_source: the MNIST the server loaded


@dataclass(frozen=True)
class Loaded:
    results_dir: Path
    source: str  # where rows were read from, e.g. "cells/<id>.json"
    runs: tuple[Run, ...]
    notes: tuple[str, ...]
    matrix: dict[str, Any] | None
    expected: tuple[str, ...] | None  # cell ids of the matrix in matrix.json
    events: dict[str, EventsCheck]


def _json_problem(exc: json.JSONDecodeError, size: int) -> str:
    hint = " (truncated?)" if exc.pos >= size - 1 else ""
    return f"corrupt JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RowError("not UTF-8 text") from None
    except OSError as exc:
        raise RowError(f"cannot read: {exc.strerror}") from None


def _parse_row(text: str, rel: str) -> Run:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RowError(_json_problem(exc, len(text))) from None
    return from_row(raw, rel)


def _cell_files(out: Path, notes: list[str]) -> list[Run]:
    runs = []
    for path in sorted((out / "cells").glob("*.json")):
        rel = f"cells/{path.name}"
        try:
            run = _parse_row(_read_text(path), rel)
        except RowError as exc:
            notes.append(f"`{rel}`: {exc}; cell skipped")
            continue
        if run.id != path.stem:
            notes.append(f"`{rel}`: holds cell {run.id!r}, not {path.stem!r}")
        runs.append(run)
    return runs


def _runs_jsonl(out: Path, notes: list[str]) -> list[Run]:
    try:
        lines = _read_text(out / "runs.jsonl").splitlines()
    except RowError as exc:
        raise ReportError(f"{out / 'runs.jsonl'}: {exc}") from None
    by_id: dict[str, Run] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rel = f"runs.jsonl:{n}"
        try:
            run = _parse_row(line, rel)
        except RowError as exc:
            notes.append(f"`{rel}`: {exc}; line skipped")
            continue
        if run.id in by_id:
            notes.append(f"`{rel}`: cell {run.id} appears again; the later line is used")
        by_id[run.id] = run
    return list(by_id.values())


def _matrix(out: Path, notes: list[str]) -> tuple[dict[str, Any] | None, tuple[str, ...] | None]:
    path = out / "matrix.json"
    if not path.exists():
        notes.append("`matrix.json` is missing: cannot tell which cells of the matrix are absent")
        return None, None
    try:
        raw = json.loads(_read_text(path))
        cells = mx.from_dict(raw, "matrix.json").cells()
    except (RowError, json.JSONDecodeError, mx.MatrixError) as exc:
        notes.append(f"`matrix.json`: unusable ({exc}); matrix metadata omitted")
        return None, None
    return raw, tuple(c.id for c in cells)


def check_events(out: Path, run: Run) -> EventsCheck:
    rel = run.events_file or f"events/{run.id}.jsonl"
    path = out / rel
    if not path.is_file():
        return EventsCheck("missing", f"`{rel}` not found")
    try:
        log = read_events(path)
    except EventLogError as exc:
        return EventsCheck("unreadable", str(exc).replace(str(out) + "/", ""))
    except (OSError, UnicodeDecodeError) as exc:
        return EventsCheck("unreadable", f"`{rel}`: {exc}")
    starts = [e["t"] for e in log.of("round_start")]
    ends = [e["t"] for e in log.of("run_end")]
    if not ends and log.events:
        ends = [log.events[-1]["t"]]
    elapsed = float(ends[-1]) - float(starts[0]) - held_seconds(log) if starts and ends else None
    summary = summarize(log)
    check = _compare(rel, run, summary, elapsed)
    return replace(check, data_source=summary.data_source)


def _compare(rel: str, run: Run, summary: RunSummary, elapsed: float | None) -> EventsCheck:
    """The row's rounds and time to accuracy against its event log's."""
    from_events = [(r.ok, r.duration) for r in summary.rounds]
    from_row_ = [(r.ok, r.duration) for r in run.rounds]
    if len(from_events) != len(from_row_) or not all(
        a[0] == b[0] and math.isclose(a[1], b[1], abs_tol=1e-6)
        for a, b in zip(from_events, from_row_, strict=True)
    ):
        return EventsCheck(
            "mismatch",
            f"`{rel}` has {len(from_events)} rounds whose durations or ok flags "
            f"differ from the row's {len(from_row_)}",
            elapsed,
        )
    tta_e, tta_r = summary.tta_seconds, run.tta_seconds
    if (tta_e is None) != (tta_r is None) or (
        tta_e is not None and tta_r is not None and not math.isclose(tta_e, tta_r, abs_tol=1e-6)
    ):
        return EventsCheck(
            "mismatch", f"`{rel}` gives time-to-accuracy {tta_e}, the row {tta_r}", elapsed
        )
    return EventsCheck("ok", f"`{rel}`: {len(from_events)} rounds match", elapsed)


def calibration_notes(out: Path, runs: list[Run]) -> list[str]:
    """One note per NET profile whose calibration (``calibration/<NET>.json``, referenced from
    its cells' rows) missed its targets: those cells ran on a network other than specified."""
    missed: dict[str, list[str]] = {}
    for r in runs:
        ref = r.calibration.get("ref")
        if isinstance(ref, str) and r.calibration.get("passed") is False:
            missed.setdefault(ref, []).append(r.id)
    notes = []
    for ref, ids in sorted(missed.items()):
        try:
            figures = json.loads((out / ref).read_text()).get("figures", [])
            failed = [f for f in figures if isinstance(f, dict) and f.get("passed") is False]
            what = ", ".join(str(f.get("name")) for f in failed)
        except (OSError, ValueError, AttributeError):
            what = "file unreadable"
        notes.append(
            f"`{ref}`: calibration missed its targets ({what or 'see the file'}); the "
            f"{len(ids)} cells measured on it ran on a network other than specified"
        )
    return notes


def load(out: Path) -> Loaded:
    """Everything the report needs from ``out``; :class:`ReportError` if there is nothing."""
    if not out.exists():
        raise ReportError(f"{out}: no such results directory")
    if not out.is_dir():
        raise ReportError(f"{out}: not a directory (expected a ztfl results directory)")
    notes: list[str] = []
    if any((out / "cells").glob("*.json")):
        source, runs = "cells/<id>.json", _cell_files(out, notes)
        tried = len(list((out / "cells").glob("*.json")))
    elif (out / "runs.jsonl").is_file():
        source, runs = "runs.jsonl", _runs_jsonl(out, notes)
        tried = -1
    else:
        raise ReportError(f"{out}: no results to report (no cells/*.json and no runs.jsonl)")
    if not runs:
        what = f"none of the {tried} files in cells/" if tried > 0 else "no line of runs.jsonl"
        first = f": {notes[0]}" if notes else ""
        raise ReportError(f"{out}: {what} holds a usable result row{first}".replace("`", ""))
    runs.sort(key=run_sort_key)
    for r in runs:
        if r.ignored:
            notes.append(f"`{r.source}`: ignored malformed {', '.join(r.ignored)}")
    matrix, expected = _matrix(out, notes)
    events = {r.id: check_events(out, r) for r in runs}
    # rows stored before metrics.data_source: the data source their event log names
    runs = [
        r if r.data_source or not events[r.id].data_source
        else replace(r, data_source=events[r.id].data_source)
        for r in runs
    ]
    for r in runs:
        ev = events[r.id]
        if ev.status != "ok":
            notes.append(f"cell {r.id}: event log {ev.status}: {ev.detail}")
    notes += calibration_notes(out, runs)
    return Loaded(
        results_dir=out,
        source=source,
        runs=tuple(runs),
        notes=tuple(notes),
        matrix=matrix,
        expected=expected,
        events=events,
    )
