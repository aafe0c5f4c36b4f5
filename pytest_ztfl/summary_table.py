"""The terminal summary at the end of a matrix run: one line per cell, in run order.

``vs SEC0`` is the cell's median round duration over its block's SEC0 arm's (rounds paired when
they ran interleaved; analysis.compare), with its 95% interval and the smallest change the
comparison could detect (MDE, 80% power). ``path`` is the median of the participants' path time
(per participant, round start to the server holding its update minus its training; mean over
participants: fl_app.summary.path_time) and its change against SEC0 in ms;
``CPU/round`` all of the arm's containers' CPU seconds per round (cgroups; local backend).
``SLO`` is the cell's worst gate verdict (FAIL, INCONCLUSIVE, PASS; ``-``: not judged).
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any

from pytest_ztfl.analysis import compare
from pytest_ztfl.analysis.quantiles import QuantileCI, quantile_cis
from pytest_ztfl.sec import Sec

HEADER = (
    "cell",
    "ok",
    "SLO",
    "rounds ok",
    "p50 s [95% CI]",
    "vs SEC0 p50 [95% CI] (MDE)",
    "path ms (vs SEC0)",
    "CPU/round s",
    "TTA s",
    "failures",
)


def _fmt_q(q: QuantileCI) -> str:
    return f"{q.estimate:.3f} [{q.ci_low:.3f},{q.ci_high:.3f}]" + ("" if q.reliable else "*")


def baseline_of(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row's block's SEC0 arm (same NET, data, seed; its fault, else none); None for that
    arm itself."""
    cell = row["cell"]
    if cell["sec"] == Sec.SEC0 and not cell.get("check"):
        return None
    found: dict[Any, dict[str, Any]] = {}
    for r in rows:
        c = r["cell"]
        if c["sec"] == Sec.SEC0 and not c.get("check") and (c["net"], c["data"], c["seed"]) == (
            cell["net"],
            cell["data"],
            cell["seed"],
        ):
            found[c.get("fault")] = r
    return found.get(cell.get("fault"), found.get(None))


def _ratio(row: dict[str, Any], base: dict[str, Any] | None, noise: compare.Noise) -> str:
    if base is None or not compare.usable(base) or not compare.usable(row):
        return "n/a"
    rc = compare.ratio([(row, base)], 0.5, seed=row["cell"]["seed"], noise=noise)
    if math.isnan(rc.ci_low):
        return f"{rc.estimate:.3f}x"
    mde = f" (±{rc.mde:.1%})" if math.isfinite(rc.mde) else ""
    star = "" if rc.reliable else "*"
    return f"{rc.estimate:.3f}x [{rc.ci_low:.3f},{rc.ci_high:.3f}]{star}{mde}"


def _path(row: dict[str, Any], base: dict[str, Any] | None, noise: compare.Noise) -> str:
    path = list(compare.values(row, "path_seconds").values())
    if not path:
        return "n/a"
    text = f"{median(path) * 1000:.1f}"
    if base is not None and compare.usable(base) and compare.usable(row):
        d = compare.difference(
            [(row, base)], 0.5, "path_seconds", seed=row["cell"]["seed"], noise=noise
        )
        text += f" ({d.estimate * 1000:+.1f})"
    return text


SEVERITY = ("fail", "inconclusive", "pass")


def _slo(row: dict[str, Any]) -> str:
    """The cell's worst SLO verdict (FAIL, then INCONCLUSIVE, then PASS); "-": not judged."""
    seen = {v.get("verdict") for v in row.get("slo") or [] if isinstance(v, dict)}
    return next((s.upper() for s in SEVERITY if s in seen), "-")


def render(rows: list[dict[str, Any]]) -> list[str]:
    table: list[tuple[str, ...]] = [HEADER]
    noise = compare.Noise.of_rows(rows)
    for r in rows:
        cell, m = r["cell"], r["metrics"]
        durations = [x["duration"] for x in m["rounds"] if x["ok"]]
        p50 = "n/a"
        if durations:
            p50 = _fmt_q(quantile_cis(durations, (0.5,), seed=cell["seed"]).get(0.5))
        base = baseline_of(r, rows)
        cpu = list(compare.values(r, "cpu_seconds").values())
        tta = m.get("tta_seconds")
        fails = ",".join(f"{k}={v}" for k, v in sorted(r.get("failures_by_class", {}).items()))
        table.append(
            (
                cell["id"],
                "yes" if r["success"] else "NO",
                _slo(r),
                f"{len(durations)}/{m['rounds_planned']}",
                p50,
                _ratio(r, base, noise),
                _path(r, base, noise),
                f"{median(cpu):.3f}" if cpu else "n/a",
                f"{tta:.1f}" if tta is not None else "censored",
                fails or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = [
        "ztfl matrix summary (run order; * = CI unreliable: too few rounds, or one block and "
        "no repeat in the run to measure instance noise; MDE: the smallest change "
        "the comparison detects, 80% power; see docs/statistics.md)"
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return lines
