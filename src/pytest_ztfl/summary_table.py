"""The terminal summary at the end of a matrix run: one line per cell."""

from __future__ import annotations

from typing import Any

from pytest_ztfl import stats

HEADER = ("cell", "ok", "rounds ok", "p50 s [95% CI]", "p99 s", "vs SEC0 p50", "TTA s", "failures")


def _fmt_q(q: stats.QuantileCI) -> str:
    return f"{q.estimate:.3f} [{q.ci_low:.3f},{q.ci_high:.3f}]" + ("" if q.reliable else "*")


def render(rows: list[dict[str, Any]]) -> list[str]:
    by_key = {
        (r["cell"]["sec"], r["cell"]["net"], r["cell"]["data"], r["cell"]["seed"]): r for r in rows
    }
    table: list[tuple[str, ...]] = [HEADER]
    for r in rows:
        cell, m = r["cell"], r["metrics"]
        durations = [x["duration"] for x in m["rounds"] if x["ok"]]
        p50 = p99 = ratio = "n/a"
        if durations:
            s = stats.quantile_cis(durations, (0.5, 0.99), seed=cell["seed"])
            p50, p99 = _fmt_q(s.get(0.5)), f"{s.get(0.99).estimate:.3f}"
        base = by_key.get(("SEC0", cell["net"], cell["data"], cell["seed"]))
        if base is not None and base is not r and durations:
            bd = [x["duration"] for x in base["metrics"]["rounds"] if x["ok"]]
            if bd:
                rc = stats.overhead_ratio(durations, bd, 0.5, seed=cell["seed"])
                ratio = f"{rc.estimate:.2f}x [{rc.ci_low:.2f},{rc.ci_high:.2f}]"
        tta = m.get("tta_seconds")
        fails = ",".join(f"{k}={v}" for k, v in sorted(r.get("failures_by_class", {}).items()))
        table.append(
            (
                cell["id"],
                "yes" if r["success"] else "NO",
                f"{len(durations)}/{m['rounds_planned']}",
                p50,
                p99,
                ratio,
                f"{tta:.1f}" if tta is not None else "censored",
                fails or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = ["ztfl matrix summary (* = CI unreliable for this n; see docs/statistics.md)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return lines
