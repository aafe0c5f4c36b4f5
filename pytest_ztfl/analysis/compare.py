"""Comparisons between arms: which rounds pair with which, and the ratio (or difference) of a
per-round metric, as the gates, the terminal summary and the report all use it.

An arm is one cell's completed rounds of one metric, with the block run it was measured in
(``ArmRounds``). Two arms pair when they ran in the same block run (``design.block_run``):
their rounds are then matched by round number. Arms of different block runs (a resumed matrix,
a stored baseline run) are compared unpaired. The metrics are per round: ``duration`` (the
server's round time), ``compute_seconds`` (slowest training + aggregation), ``comm_seconds``
(the rest: communication and the controls on its path), ``path_seconds`` (mean over the
participants of their exchange's time outside training; the steadier measure of a control's
cost), ``cpu_seconds`` (CPU of every
container of the arm during its round).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_ztfl.analysis import paired
from pytest_ztfl.analysis.ratios import RatioCI

Row = dict[str, Any]
METRICS = ("duration", "compute_seconds", "comm_seconds", "path_seconds", "cpu_seconds")


@dataclass(frozen=True)
class ArmRounds:
    """One arm's completed rounds of one metric: ``{round number: value}``."""

    label: str
    block_run: str | None
    values: dict[int, float] = field(default_factory=dict)


def values(row: Row, metric: str = "duration") -> dict[int, float]:
    """``{round number: value}`` of a row's completed rounds that have the metric."""
    return {
        int(r["round"]): float(r[metric])
        for r in row["metrics"]["rounds"]
        if r["ok"] and r.get(metric) is not None
    }


def of_row(row: Row, metric: str = "duration") -> ArmRounds:
    run = (row.get("design") or {}).get("block_run")
    return ArmRounds(row["cell"]["id"], run if isinstance(run, str) else None, values(row, metric))


def sample(treat: ArmRounds, base: ArmRounds) -> paired.BlockSample:
    """Two arms as one block: paired when they ran in the same block run."""
    label = f"{treat.label} vs {base.label}"
    if treat.block_run is not None and treat.block_run == base.block_run:
        return paired.match_rounds(treat.values, base.values, label)
    return paired.unmatched(list(treat.values.values()), list(base.values.values()), label)


def pool_for(q: float) -> paired.Pool:
    """How a comparison over blocks pools: the median block by block (each block's ratio, a
    geometric mean over blocks), a tail over all rounds (no block holds enough of them)."""
    return "blocks" if q <= 0.5 else "rounds"


def arm_ratio(
    pairs: Sequence[tuple[ArmRounds, ArmRounds]], q: float = 0.5, seed: int = 0
) -> RatioCI:
    """Raises ValueError when no pair has rounds of both arms (or a value is not > 0)."""
    return paired.ratio([sample(t, b) for t, b in pairs], q, pool=pool_for(q), seed=seed)


def arm_difference(
    pairs: Sequence[tuple[ArmRounds, ArmRounds]], q: float = 0.5, seed: int = 0
) -> paired.DiffCI:
    return paired.difference([sample(t, b) for t, b in pairs], q, pool=pool_for(q), seed=seed)


def ratio(
    pairs: Sequence[tuple[Row, Row]], q: float = 0.5, metric: str = "duration", seed: int = 0
) -> RatioCI:
    """:func:`arm_ratio` of result rows (treatment row, baseline row)."""
    return arm_ratio([(of_row(t, metric), of_row(b, metric)) for t, b in pairs], q, seed)


def difference(
    pairs: Sequence[tuple[Row, Row]], q: float = 0.5, metric: str = "duration", seed: int = 0
) -> paired.DiffCI:
    """:func:`arm_difference` of result rows (treatment row, baseline row)."""
    return arm_difference([(of_row(t, metric), of_row(b, metric)) for t, b in pairs], q, seed)


def usable(row: Row | None) -> bool:
    """A row that may enter a comparison: measured, its proofs passed, no harness error."""
    return (
        row is not None
        and not row.get("error")
        and all(p.get("passed") for p in row.get("proofs", []))
        and bool(values(row))
    )
