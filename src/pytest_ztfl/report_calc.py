"""The numbers behind the report's tables and figures, computed once with pytest_ztfl.stats.

Per cell: p50/p95/p99 of completed rounds with bootstrap CIs, and the p50/p99 overhead vs the
SEC0 cell with the same NET, data and seed (the same call and seed as the SLO gate, so the
numbers agree). Per group (SEC x NET x data, pooled over seeds as the seed study did):
quantiles, censored TTA, accuracy by round with a band over seeds, failures by class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from pytest_ztfl import stats
from pytest_ztfl.report_load import Loaded
from pytest_ztfl.report_model import Run, natural_key, sec_sort_key

QUANTILES = (0.5, 0.95, 0.99)
RATIO_QUANTILES = (0.5, 0.99)
GROUP_SEED = 0  # bootstrap seed for pooled samples (cells, and one-run groups, use the cell's)

GroupKey = tuple[str, str, str]  # (SEC label, NET, data)


@dataclass(frozen=True)
class CellStats:
    run: Run
    sec: str  # SEC label (with the mTLS mode when the run holds both modes)
    summary: stats.SampleSummary | None
    ratios: tuple[stats.RatioCI, ...]  # p50, p99 vs SEC0; empty when not computable
    ratio_note: str


@dataclass(frozen=True)
class ConvergencePoint:
    round: int
    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class GroupStats:
    key: GroupKey
    runs: tuple[Run, ...]
    durations: tuple[float, ...]
    summary: stats.SampleSummary | None
    tta: stats.TTAEstimate | None
    tta_note: str
    target: float | None
    convergence: tuple[ConvergencePoint, ...]
    failures: dict[str, int]
    failed_rounds: int
    rounds_total: int

    @property
    def seeds(self) -> int:
        return len(self.runs)


@dataclass(frozen=True)
class Analysis:
    loaded: Loaded
    show_mtls: bool
    secs: tuple[str, ...]
    nets: tuple[str, ...]
    datas: tuple[str, ...]
    cells: tuple[CellStats, ...]
    groups: dict[GroupKey, GroupStats]

    def runs(self, sec: str | None = None, net: str | None = None) -> list[Run]:
        return [
            c.run
            for c in self.cells
            if (sec is None or c.sec == sec) and (net is None or c.run.net == net)
        ]


def sec_label(run: Run, show_mtls: bool) -> str:
    return f"{run.sec}-{run.mtls}" if show_mtls and run.mtls else run.sec


def quantiles(sample: Sequence[float], seed: int) -> stats.SampleSummary | None:
    return stats.quantile_cis(sample, QUANTILES, seed=seed) if sample else None


def ratios(
    treat: Sequence[float], base: Sequence[float], seed: int, qs: Sequence[float] = RATIO_QUANTILES
) -> tuple[tuple[stats.RatioCI, ...], str]:
    if not treat or not base:
        return (), "no completed rounds to compare"
    try:
        return stats.overhead_ratios(treat, base, qs, seed=seed), ""
    except ValueError as exc:  # e.g. a zero duration: a ratio is undefined
        return (), str(exc)


def mean_ci(
    values: Sequence[float], confidence: float = stats.DEFAULT_CONFIDENCE
) -> tuple[float, float, float]:
    """Mean with a Student-t CI (stats has no plain-mean interval; scipy supplies it)."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    if np.ptp(x) == 0:
        return m, m, m
    lo, hi = sps.t.interval(confidence, x.size - 1, loc=m, scale=sps.sem(x))
    return m, float(lo), float(hi)


def censoring_time(run: Run, elapsed: float | None) -> tuple[float, bool]:
    """(time, exact): the run's observed span for TTA censoring; falls back to the sum of its
    round durations (a lower bound: it omits evaluation time) when the event log is unusable."""
    if elapsed is not None and elapsed >= 0:
        return elapsed, True
    return sum(r.duration for r in run.rounds), False


def _tta(runs: Iterable[Run], loaded: Loaded) -> tuple[stats.TTAEstimate | None, str]:
    times, reached, approx = [], [], 0
    for r in runs:
        if r.tta_seconds is not None:
            times.append(r.tta_seconds)
            reached.append(True)
        else:
            t, exact = censoring_time(r, loaded.events[r.id].elapsed)
            approx += not exact
            times.append(t)
            reached.append(False)
    note = (
        f"{approx} censoring time(s) from summed round durations (event log unusable)"
        if approx
        else ""
    )
    try:
        return stats.tta_mean(times, reached), note
    except ValueError as exc:
        return None, str(exc)


def _convergence(runs: Sequence[Run]) -> tuple[ConvergencePoint, ...]:
    by_round: dict[int, list[float]] = {}
    for r in runs:
        for k, acc in r.accuracy_by_round.items():
            by_round.setdefault(k, []).append(acc)
    out = []
    for k in sorted(by_round):
        m, lo, hi = mean_ci(by_round[k])
        out.append(ConvergencePoint(k, m, lo, hi, len(by_round[k])))
    return tuple(out)


def _group(key: GroupKey, runs: list[Run], loaded: Loaded) -> GroupStats:
    durations = [d for r in sorted(runs, key=lambda r: r.id) for d in r.durations]
    tta, note = _tta(runs, loaded)
    failures: Counter[str] = Counter()
    for r in runs:
        failures.update(r.failures_by_class)
    targets = {r.target for r in runs if r.target is not None}
    return GroupStats(
        key=key,
        runs=tuple(runs),
        durations=tuple(durations),
        # one run: its own seed, so the group's interval is the cell's to the last digit
        summary=quantiles(durations, runs[0].seed if len(runs) == 1 else GROUP_SEED),
        tta=tta,
        tta_note=note,
        target=targets.pop() if len(targets) == 1 else None,
        convergence=_convergence(runs),
        failures=dict(failures),
        failed_rounds=sum(r.failed_rounds for r in runs),
        rounds_total=sum(r.rounds_denominator for r in runs),
    )


def analyse(loaded: Loaded) -> Analysis:
    runs = loaded.runs
    show_mtls = len({r.mtls for r in runs if r.sec in ("SEC2", "SEC3") and r.mtls}) > 1
    # the gate's rule (matrix.Cell.baseline): same NET, data, seed and fault, else unfaulted
    baselines = {(r.net, r.data, r.seed, r.fault): r for r in runs if r.sec == "SEC0"}
    cells = []
    for r in runs:
        if r.sec == "SEC0":
            rs: tuple[stats.RatioCI, ...] = ()
            why = "baseline"
        elif (
            base := baselines.get((r.net, r.data, r.seed, r.fault))
            or baselines.get((r.net, r.data, r.seed, None))
        ) is None:
            rs, why = (), f"no SEC0 cell with {r.net}, {r.data}, seed {r.seed}"
        else:
            rs, why = ratios(r.durations, base.durations, r.seed)
        cells.append(CellStats(r, sec_label(r, show_mtls), quantiles(r.durations, r.seed), rs, why))
    members: dict[GroupKey, list[Run]] = {}
    for c in cells:
        members.setdefault((c.sec, c.run.net, c.run.data), []).append(c.run)
    groups = {k: _group(k, v, loaded) for k, v in members.items()}
    return Analysis(
        loaded=loaded,
        show_mtls=show_mtls,
        secs=tuple(sorted({c.sec for c in cells}, key=sec_sort_key)),
        nets=tuple(sorted({r.net for r in runs}, key=natural_key)),
        datas=tuple(sorted({r.data for r in runs})),
        cells=tuple(cells),
        groups=groups,
    )
