"""The SLO gates. Verdict rules: pytest_ztfl.analysis.gates.

Per cell (its test): the per-round failure rate, and the median round duration against its
block's SEC0 arm (rounds paired; pytest_ztfl.analysis.compare), and with ``--ztfl-baseline`` against
the same cell of a stored run. Per group of cells (one SEC level, mTLS mode and NET, pooled
over data splits and seeds: the pooled tests at the end of a matrix): median and p95 round
duration against SEC0, with an interval that resamples blocks and rounds. A p95 from too few
rounds for an honest interval can warn but never fail (pytest_ztfl.analysis); pooling gives
the tail gate the rounds it needs (72 per arm at 95%).

Check arms (``aa``, ``delay<MS>ms``) are the instrument's own: they are not gated against a
limit; their findings are warnings (pytest_ztfl.matrix_tests) and a report section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pytest_ztfl.analysis import compare, gates
from pytest_ztfl.matrix import Cell
from pytest_ztfl.options import Settings

Row = dict[str, Any]
TAIL = 0.95


def _unjudged(metric: str, limit: float, n: tuple[int, ...], why: str) -> gates.GateResult:
    nan = math.nan
    return gates.upper_limit_gate(metric, nan, nan, nan, limit, n=n, note=why, fmt="{:.3g}x".format)


def _mde_note(r: Any) -> str:
    mde = getattr(r, "mde", math.nan)
    return f"detects >= {mde:.1%} at this n (80% power)" if math.isfinite(mde) else ""


def ratio_gate(
    metric: str,
    pairs: Sequence[tuple[Row, Row]],
    q: float,
    limit: float,
    seed: int,
    note: str = "",
    noise: compare.Noise = compare.NO_NOISE,
) -> gates.GateResult:
    """Gate "q-quantile ratio <= limit" over ``pairs`` (treatment row, baseline row), with the
    run's instance noise (compare.Noise)."""
    try:
        r = compare.ratio(pairs, q, seed=seed, noise=noise)
    except ValueError as exc:
        return _unjudged(metric, limit, (0, 0), "; ".join(x for x in (str(exc), note) if x))
    full = "; ".join(x for x in (r.note, _mde_note(r), note) if x)
    return gates.overhead_gate(replace(r, note=full), limit, metric=metric)


def evaluate(
    cell: Cell,
    row: Row,
    baseline: Row | None,
    settings: Settings,
    stored: Row | None = None,
    noise: compare.Noise = compare.NO_NOISE,
) -> list[gates.GateResult]:
    """The cell's own gates. ``baseline``: its block's SEC0 row; ``stored``: the same cell
    in the ``--ztfl-baseline`` run; ``noise``: the instance noise of the rows measured so far
    (one block's interval needs it: without, its gate can PASS but never FAIL)."""
    rounds = row["metrics"]["rounds"]
    planned = row["metrics"]["rounds_planned"]
    # Rounds that never ran (the run died) count as failed rounds.
    failed = sum(not r["ok"] for r in rounds) + max(planned - len(rounds), 0)
    out = [
        gates.failure_rate_gate(failed, max(planned, len(rounds)), limit=settings.slo_failure_rate)
    ]
    if stored is not None:
        out.append(
            ratio_gate(
                f"median round duration vs {settings.baseline_dir}",
                [(row, stored)],
                0.5,
                settings.slo_overhead_median,
                cell.seed,
                noise=noise,
            )
        )
    if cell.check is not None or cell.level.baseline:
        return out
    metric = f"median round duration {cell.sec}/SEC0"
    n = (len(compare.values(row)), 0)
    if baseline is None:
        why = "no SEC0 baseline (same NET, data, seed and fault) in this run or its results"
        return [*out, _unjudged(metric, settings.slo_overhead_median, n, why)]
    if not compare.usable(baseline):
        why = f"the baseline {baseline['cell']['id']} is not usable: {_unusable(baseline)}"
        return [*out, _unjudged(metric, settings.slo_overhead_median, n, why)]
    return [
        *out,
        ratio_gate(
            metric, [(row, baseline)], 0.5, settings.slo_overhead_median, cell.seed, noise=noise
        ),
    ]


def _unusable(row: Row) -> str:
    if row.get("error"):
        return str(row["error"])
    if not all(p.get("passed") for p in row.get("proofs", [])):
        return "its proofs failed"
    return "no completed rounds"


def pooled(
    label: str,
    pairs: Sequence[tuple[Row, Row]],
    settings: Settings,
    seed: int = 0,
    noise: compare.Noise = compare.NO_NOISE,
) -> list[gates.GateResult]:
    """The group's gates: median and p95 over every block that holds both arms."""
    use = [(t, b) for t, b in pairs if compare.usable(t) and compare.usable(b)]
    left = len(pairs) - len(use)
    note = f"{left} pair(s) left out: a row with an error or failed proofs" if left else ""
    out = []
    for q, limit in ((0.5, settings.slo_overhead_median), (TAIL, settings.slo_overhead_tail)):
        name = "median" if q == 0.5 else f"p{q * 100:g}"
        metric = f"{name} round duration {label}, pooled over {len(use)} block(s)"
        if not use:
            out.append(_unjudged(metric, limit, (0, 0), note or "no pair of rows to compare"))
            continue
        out.append(ratio_gate(metric, use, q, limit, seed, note, noise))
    return out


def group_key(cell: Cell) -> str:
    """The pooled comparison a cell belongs to: SEC level (with its mTLS mode when the matrix
    shows modes), NET, heterogeneity, fault."""
    sec = f"{cell.sec}-{cell.mtls}" if cell.show_mtls and cell.mtls else cell.sec
    return f"{sec}-{cell.net}{cell.suffix}"
