"""What the sections of report.md share: the source line of the tables, a field's distinct
values over rows, times in UTC, a block's label, the NET calibrations in one line, the verdicts
of the instrument's checks, and a pass/fail table collapsed to its count and exceptions."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pytest_ztfl.analysis.ratios import RatioCI
from pytest_ztfl.report.calc import Analysis, CheckStats
from pytest_ztfl.report.fmt import table
from pytest_ztfl.report.model import Run, calibration_order

NOT_RECORDED = "not recorded"


def source(a: Analysis) -> str:
    """Where the rows were read from, as the tables' source lines name it."""
    if a.loaded.source == "runs.jsonl":
        return "`runs.jsonl` (no `cells/` files)"
    return "`cells/<id>.json` (the rows of `runs.jsonl`)"


def distinct(values: Iterable[Any]) -> str:
    counts = Counter(
        json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v)
        for v in values
        if v is not None
    )
    if not counts:
        return "not recorded"
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{v} ({n} cells)" for v, n in counts.most_common())


def utc(t: float | None) -> str:
    if t is None:
        return "?"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def block_label(run: Run) -> str:
    b = run.design.get("block")
    return str(b) if isinstance(b, str) else f"{run.net}, {run.data}, seed {run.seed}"


def calibrations(runs: Sequence[Run]) -> str:
    """``NET0 passed (`calibration/NET0.json`); NET2 MISSED its targets (...)``; a profile
    calibrated in several sittings of a resumed run names each file under its verdict."""
    seen = {
        (r.net, r.calibration.get("ref"), r.calibration.get("passed"), r.calibration.get("note"))
        for r in runs
        if r.calibration
    }
    if not seen:
        return NOT_RECORDED
    grouped: dict[tuple[str, Any, Any], list[Any]] = {}
    for net, ref, ok, note in sorted(seen, key=str):
        grouped.setdefault((net, ok, note if ref is None else None), []).append(ref)

    def one(net: str, ok: Any, note: Any, refs: list[Any]) -> str:
        if refs == [None]:
            return f"{net} {note or 'not measured'}"
        verdict = "passed" if ok else "MISSED its targets" if ok is False else "?"
        return f"{net} {verdict} ({', '.join(f'`{r}`' for r in refs)})"

    return "; ".join(one(*key, sorted(refs, key=calibration_order))
                     for key, refs in grouped.items())


def check_verdict(c: CheckStats) -> str:
    """An A/A arm's verdict: a false alarm when its interval excludes 1."""
    r = c.ratio
    if r is None:
        return f"not judged ({c.note})"
    if not (math.isfinite(r.ci_low) and math.isfinite(r.ci_high)):
        return "not judged (no interval)"
    return "FALSE ALARM (interval excludes 1)" if r.excludes_one else "within noise"


def detected(r: RatioCI | None) -> str:
    """Whether a known delay was found: its ratio's interval lies above 1."""
    if r is None or not math.isfinite(r.ci_low):
        return "not judged"
    if r.ci_low > 1.0:
        return "yes"
    return "no (interval below 1)" if r.ci_high < 1.0 else "no"


def collapsed(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    passed: Callable[[Sequence[str]], bool],
    what: str,
) -> list[str]:
    """A table whose rows pass or not, as the count that passed and a table of the others:
    ``All 28 verdicts PASS.``, or ``25 of 28 verdicts PASS; the other 3:`` and their rows."""
    others = [r for r in rows if not passed(r)]
    if not others:
        return [f"All {len(rows)} {what} PASS."]
    return [
        f"{len(rows) - len(others)} of {len(rows)} {what} PASS; the other {len(others)}:",
        "",
        *table(header, others),
    ]
