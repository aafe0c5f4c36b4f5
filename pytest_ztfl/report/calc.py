"""The numbers behind the report's tables and figures, computed once.

Check arms (``aa``, ``delay<MS>ms``: the instrument's own, pytest_ztfl.matrix) are kept apart:
they never enter the cells' comparisons, the groups, the claims or the figures, and a SEC0
check arm is never anyone's baseline. Their comparisons with their block's SEC0 arm are
``Analysis.checks`` (per arm) and ``Analysis.check_pools`` (per check, pooled over blocks).

Per cell: p50/p95/p99 of completed rounds with bootstrap CIs (descriptive,
pytest_ztfl.analysis), and the p50/p95 ratio against its block's SEC0 arm (same NET, data, seed
and fault, else the unfaulted one: the gate's rule) by analysis.compare: rounds paired when
both arms ran in the same block run, bootstrap seed the cell's, so the p50 ratio is the SLO
gate's to the last digit. The round's parts (compute, communication, CPU by cgroup) likewise.
Per group (SEC x NET x data, pooled over seeds): quantiles, the p50/p95 ratio over the group's
blocks, censored TTA, accuracy by round with a band over seeds, failures by class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from statistics import median

import numpy as np
from scipy import stats as sps

from pytest_ztfl.analysis import gates
from pytest_ztfl.analysis.base import DEFAULT_CONFIDENCE
from pytest_ztfl.analysis.compare import NO_NOISE, Noise
from pytest_ztfl.analysis.paired import DiffCI
from pytest_ztfl.analysis.quantiles import SampleSummary, quantile_cis
from pytest_ztfl.analysis.ratios import RatioCI
from pytest_ztfl.analysis.tta import TTAEstimate, tta_mean
from pytest_ztfl.report.arms import Pair, arm_difference, arm_ratios, baseline_of
from pytest_ztfl.report.load import Loaded
from pytest_ztfl.report.model import Run, natural_key, noise_of, sec_sort_key
from pytest_ztfl.sec import Sec

QUANTILES = (0.5, 0.95, 0.99)
GROUP_SEED = 0  # bootstrap seed for pooled samples (cells, and one-run groups, use the cell's)

GroupKey = tuple[str, str, str]  # (SEC label, NET, data)


@dataclass(frozen=True)
class Parts:
    """Where a cell's rounds' time goes (medians over completed rounds; None: not recorded)
    and what its communication and CPU cost against its block's SEC0 arm."""

    duration: float | None
    compute: float | None
    comm: float | None
    path: float | None
    cpu: float | None
    proxy: float | None
    delayline: float | None
    memory: tuple[int, int, int] | None  # per-pod peak bytes: (max over pods, sum, pods)
    path_diff: DiffCI | None = None  # p50 path_seconds minus the SEC0 arm's
    cpu_ratio: RatioCI | None = None  # p50 cpu_seconds over the SEC0 arm's
    note: str = ""  # why a comparison is missing


@dataclass(frozen=True)
class CellStats:
    run: Run
    sec: str  # SEC label (with the mTLS mode when the run holds both modes)
    summary: SampleSummary | None
    ratios: tuple[RatioCI, ...]  # p50, p95 vs SEC0; empty when not computable
    ratio_note: str
    baseline: Run | None = None
    parts: Parts | None = None


@dataclass(frozen=True)
class CheckStats:
    """A check arm (or, pooled, every arm of one check) against its block's SEC0 arm:
    median round duration ratio, and the differences of the median round and of its
    participants' path time (seconds), and the path time's ratio: what a delay check is judged
    on, being where a control's cost shows and steadier than the round."""

    check: str
    runs: tuple[Run, ...]
    baselines: tuple[Run, ...]
    ratio: RatioCI | None
    duration_diff: DiffCI | None
    path_diff: DiffCI | None
    note: str = ""
    path_ratio: RatioCI | None = None
    tail: RatioCI | None = None  # p95 ratio (pooled A/A arms only: the tail's noise)

    @property
    def pairs(self) -> list[Pair]:
        """(check arm, SEC0 arm) per block; none when the block has no SEC0 arm."""
        return list(zip(self.runs, self.baselines, strict=False))

    @property
    def inject_ms(self) -> float:
        """The known effect a ``delay<MS>ms`` arm carries (0 for ``aa``)."""
        if self.check.startswith("delay"):
            return float(self.check.removeprefix("delay").removesuffix("ms"))
        return 0.0


@dataclass(frozen=True)
class ConvergencePoint:
    round: int
    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Rate:
    """Failed of planned rounds, with the 95% Clopper-Pearson interval of the per-round rate
    (the failure-rate gate's: pytest_ztfl.analysis.gates)."""

    failed: int
    total: int
    estimate: float
    ci_low: float
    ci_high: float


def failure_rate(failed: int, total: int) -> Rate:
    g = gates.failure_rate_gate(failed, total)
    return Rate(failed, total, g.estimate, g.ci_low, g.ci_high)


@dataclass(frozen=True)
class GroupStats:
    key: GroupKey
    runs: tuple[Run, ...]
    durations: tuple[float, ...]
    summary: SampleSummary | None
    tta: TTAEstimate | None
    tta_note: str
    target: float | None
    convergence: tuple[ConvergencePoint, ...]
    failures: dict[str, int]
    failed_rounds: int
    rounds_total: int
    ratios: tuple[RatioCI, ...] = ()  # p50, p95 vs SEC0 over the group's blocks
    ratio_note: str = ""

    @property
    def seeds(self) -> int:
        return len(self.runs)

    @property
    def rate(self) -> Rate:
        """Its per-round failure rate."""
        return failure_rate(self.failed_rounds, self.rounds_total)


@dataclass(frozen=True)
class Analysis:
    loaded: Loaded
    show_mtls: bool
    secs: tuple[str, ...]
    nets: tuple[str, ...]
    datas: tuple[str, ...]
    cells: tuple[CellStats, ...]  # the cells proper (no check arm)
    groups: dict[GroupKey, GroupStats]
    checks: tuple[CheckStats, ...] = ()  # one per check arm, in cell order
    check_pools: tuple[CheckStats, ...] = ()  # one per check, pooled over its blocks
    check_cells: tuple[CellStats, ...] = field(default=())  # the check arms' own quantiles
    noise: Noise = NO_NOISE  # the run's instance-level noise, every comparison borrows it

    def runs(self, sec: str | None = None, net: str | None = None) -> list[Run]:
        return [
            c.run
            for c in self.cells
            if (sec is None or c.sec == sec) and (net is None or c.run.net == net)
        ]


def sec_label(run: Run, show_mtls: bool) -> str:
    return f"{run.sec}-{run.mtls}" if show_mtls and run.mtls else run.sec


def quantiles(sample: Sequence[float], seed: int) -> SampleSummary | None:
    return quantile_cis(sample, QUANTILES, seed=seed) if sample else None


def mean_ci(
    values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float, float]:
    """Mean with a Student-t CI (analysis has no plain-mean interval; scipy supplies it)."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    if np.ptp(x) == 0:
        return m, m, m
    lo, hi = sps.t.interval(confidence, x.size - 1, loc=m, scale=sps.sem(x))
    return m, float(lo), float(hi)


def censoring_time(run: Run, elapsed: float | None) -> tuple[float, bool]:
    """(time, exact): the run's observed span for TTA censoring (its own: time held between
    interleaved rounds left out, report.load); falls back to the sum of its round durations
    (a lower bound: it omits evaluation time) when the event log is unusable."""
    if elapsed is not None and elapsed >= 0:
        return elapsed, True
    return sum(r.duration for r in run.rounds), False


def _median(run: Run, metric: str) -> float | None:
    vals = [v for r in run.rounds if r.ok and (v := r.value(metric)) is not None]
    return float(median(vals)) if vals else None


def peak_memory(run: Run) -> tuple[int, int, int] | None:
    """(max over pods, sum over pods, pods) of a pod's peak memory, a pod's being the sum of
    its containers' peaks (an upper bound: they need not peak at once); None: not recorded."""
    pods = run.resources.get("pods")
    if not isinstance(pods, dict):
        return None
    per_pod = []
    for containers in pods.values():
        if not isinstance(containers, dict):
            continue
        peaks = [
            int(c["memory_peak_bytes"])
            for c in containers.values()
            if isinstance(c, dict)
            and isinstance(c.get("memory_peak_bytes"), int)
            and not isinstance(c.get("memory_peak_bytes"), bool)
        ]
        if peaks:
            per_pod.append(sum(peaks))
    return (max(per_pod), sum(per_pod), len(per_pod)) if per_pod else None


def parts(run: Run, base: Run | None, noise: Noise = NO_NOISE) -> Parts:
    path_diff = cpu_ratio = None
    notes = []
    if base is not None:
        path_diff, why = arm_difference([(run, base)], run.seed, "path_seconds", noise=noise)
        if why:
            notes.append(f"path: {why}")
        rs, why = arm_ratios([(run, base)], run.seed, (0.5,), "cpu_seconds", noise)
        cpu_ratio = rs[0] if rs else None
        if why:
            notes.append(f"CPU: {why}")
    return Parts(
        duration=_median(run, "duration"),
        compute=_median(run, "compute_seconds"),
        comm=_median(run, "comm_seconds"),
        path=_median(run, "path_seconds"),
        cpu=_median(run, "cpu_seconds"),
        proxy=_median(run, "cpu_proxy_seconds"),
        delayline=_median(run, "cpu_delayline_seconds"),
        memory=peak_memory(run),
        path_diff=path_diff,
        cpu_ratio=cpu_ratio,
        note="; ".join(notes),
    )


def load_fractions(runs: Iterable[Run]) -> list[float]:
    """Per completed round: the machine's CPU that was not the arm's (``cpu_other_seconds``)
    over the round's duration: the load the round met, in CPUs."""
    return [
        r.cpu_other_seconds / r.duration
        for run in runs
        for r in run.rounds
        if r.ok and r.cpu_other_seconds is not None and r.duration > 0
    ]


def tta_of(runs: Iterable[Run], loaded: Loaded) -> tuple[TTAEstimate | None, str]:
    """Mean TTA of ``runs`` (censored where not reached), or None and why; and a note."""
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
        return tta_mean(times, reached), note
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


def _group(key: GroupKey, cells: list[CellStats], loaded: Loaded, noise: Noise) -> GroupStats:
    runs = [c.run for c in cells]
    durations = [d for r in sorted(runs, key=lambda r: r.id) for d in r.durations]
    tta, note = tta_of(runs, loaded)
    failures: Counter[str] = Counter()
    for r in runs:
        failures.update(r.failures_by_class)
    targets = {r.target for r in runs if r.target is not None}
    # one run: its own seed, so the group's numbers are the cell's to the last digit
    seed = runs[0].seed if len(runs) == 1 else GROUP_SEED
    pairs = sorted(
        ((c.run, c.baseline) for c in cells if c.baseline is not None), key=lambda p: p[0].id
    )
    if key[0] == Sec.SEC0:
        rs: tuple[RatioCI, ...] = ()
        why = "baseline"
    elif not pairs:
        rs, why = (), "no block has a SEC0 arm"
    else:
        rs, why = arm_ratios(pairs, seed, noise=noise)
    return GroupStats(
        key=key,
        runs=tuple(runs),
        durations=tuple(durations),
        summary=quantiles(durations, seed),
        tta=tta,
        tta_note=note,
        target=targets.pop() if len(targets) == 1 else None,
        convergence=_convergence(runs),
        failures=dict(failures),
        failed_rounds=sum(r.failed_rounds for r in runs),
        rounds_total=sum(r.rounds_denominator for r in runs),
        ratios=rs,
        ratio_note=why,
    )


def _check(check: str, pairs: Sequence[Pair], seed: int, noise: Noise) -> CheckStats:
    ratio = duration_diff = path_diff = path_ratio = None
    rs, why = arm_ratios(pairs, seed, (0.5,), noise=noise)
    notes = [why] if why else []
    if rs:
        ratio = rs[0]
        if check != "aa":
            duration_diff, _ = arm_difference(pairs, seed, noise=noise)
            path_diff, why = arm_difference(pairs, seed, "path_seconds", noise=noise)
            if why:
                notes.append(f"path: {why}")
            prs, _ = arm_ratios(pairs, seed, (0.5,), "path_seconds", noise)
            path_ratio = prs[0] if prs else None
    return CheckStats(
        check=check,
        runs=tuple(t for t, _ in pairs),
        baselines=tuple(b for _, b in pairs),
        ratio=ratio,
        duration_diff=duration_diff,
        path_diff=path_diff,
        path_ratio=path_ratio,
        note="; ".join(notes),
    )


def _checks(
    check_runs: Sequence[Run], runs: Sequence[Run], noise: Noise
) -> tuple[tuple[CheckStats, ...], tuple[CheckStats, ...]]:
    per_arm: list[CheckStats] = []
    by_check: dict[str, list[Pair]] = {}
    for r in check_runs:
        assert r.check is not None
        base = baseline_of(r, runs)
        if base is None:
            per_arm.append(
                CheckStats(r.check, (r,), (), None, None, None, "its block has no SEC0 arm")
            )
            continue
        per_arm.append(_check(r.check, [(r, base)], r.seed, noise))
        by_check.setdefault(r.check, []).append((r, base))
    pools = []
    for check, pairs in sorted(by_check.items(), key=lambda kv: natural_key(kv[0])):
        pairs.sort(key=lambda p: p[0].id)
        pool = _check(check, pairs, GROUP_SEED, noise)
        if check == "aa":
            tail, _ = arm_ratios(pairs, GROUP_SEED, (0.95,), noise=noise)
            pool = replace(pool, tail=tail[0] if tail else None)
        pools.append(pool)
    return tuple(per_arm), tuple(pools)


def analyse(loaded: Loaded) -> Analysis:
    runs = [r for r in loaded.runs if r.check is None]
    check_runs = [r for r in loaded.runs if r.check is not None]
    show_mtls = len({r.mtls for r in runs if r.sec in (Sec.SEC2, Sec.SEC3) and r.mtls}) > 1
    noise = noise_of(loaded.runs)
    cells = []
    for r in runs:
        base = baseline_of(r, runs)
        if r.sec == Sec.SEC0:
            rs: tuple[RatioCI, ...] = ()
            why = "baseline"
        elif base is None:
            rs, why = (), f"no SEC0 cell with {r.net}, {r.data}, seed {r.seed}"
        else:
            rs, why = arm_ratios([(r, base)], r.seed, noise=noise)
        cells.append(
            CellStats(
                r,
                sec_label(r, show_mtls),
                quantiles(r.durations, r.seed),
                rs,
                why,
                base,
                parts(r, base, noise),
            )
        )
    members: dict[GroupKey, list[CellStats]] = {}
    for c in cells:
        members.setdefault((c.sec, c.run.net, c.run.data), []).append(c)
    groups = {k: _group(k, v, loaded, noise) for k, v in members.items()}
    checks, pools = _checks(check_runs, runs, noise)
    return Analysis(
        loaded=loaded,
        show_mtls=show_mtls,
        secs=tuple(sorted({c.sec for c in cells}, key=sec_sort_key)),
        nets=tuple(sorted({r.net for r in runs}, key=natural_key)),
        datas=tuple(sorted({r.data for r in runs})),
        cells=tuple(cells),
        groups=groups,
        checks=checks,
        check_pools=pools,
        noise=noise,
        check_cells=tuple(
            CellStats(r, r.sec, quantiles(r.durations, r.seed), (), "check arm") for r in check_runs
        ),
    )
