"""The SLO gates of one cell: its per-round failure rate, and its round-duration overhead vs the
SEC0 cell with the same NET, data and seed (median and p99). Verdict rules: pytest_ztfl.gates."""

from __future__ import annotations

from typing import Any

from pytest_ztfl import gates, stats
from pytest_ztfl.matrix import Cell
from pytest_ztfl.options import Settings


def evaluate(
    cell: Cell, row: dict[str, Any], baseline: dict[str, Any] | None, settings: Settings
) -> list[gates.GateResult]:
    rounds = row["metrics"]["rounds"]
    planned = row["metrics"]["rounds_planned"]
    # Rounds that never ran (the run died) count as failed rounds.
    failed = sum(not r["ok"] for r in rounds) + max(planned - len(rounds), 0)
    out = [
        gates.failure_rate_gate(failed, max(planned, len(rounds)), limit=settings.slo_failure_rate)
    ]
    if cell.sec == "SEC0":
        return out
    treat = [r["duration"] for r in rounds if r["ok"]]
    base = (
        []
        if baseline is None
        else [r["duration"] for r in baseline["metrics"]["rounds"] if r["ok"]]
    )
    if baseline is None or len(treat) < 2 or len(base) < 2:
        # Not a silent pass: say which gate could not be judged, and why.
        why = (
            "no SEC0 baseline (same NET, data, seed and fault) in this run or its results"
            if baseline is None
            else "fewer than 2 completed rounds to compare"
        )
        nan = float("nan")
        return out + [
            gates.upper_limit_gate(
                f"{q} round duration {cell.sec}/SEC0",
                nan,
                nan,
                nan,
                limit,
                n=(len(treat), len(base)),
                note=why,
                fmt="{:.3g}x".format,
            )
            for q, limit in (
                ("median", settings.slo_overhead_median),
                ("p99", settings.slo_overhead_p99),
            )
        ]
    med, p99 = stats.overhead_ratios(treat, base, (0.5, 0.99), seed=cell.seed)
    out.append(
        gates.overhead_gate(
            med, settings.slo_overhead_median, metric=f"median round duration {cell.sec}/SEC0"
        )
    )
    out.append(
        gates.overhead_gate(
            p99, settings.slo_overhead_p99, metric=f"p99 round duration {cell.sec}/SEC0"
        )
    )
    return out
