"""What the sections of report.md share: the source line of the tables, a field's distinct
values over rows, times in UTC, a block's label."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.model import Run

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
