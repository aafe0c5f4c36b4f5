"""What a run measures of the seed study's claims beyond a ratio of two arms (which
report.arms gives): per configuration (SEC level x NET) the per-round failure share and the
final accuracy, each with its interval; rounds to the accuracy target; the NET's measured
round trip. Beside ours, the study's own definitions on the same rows, named as such:

* its p99 of a configuration is the mean over runs of each run's p99 (the Fig. 2 script), or
  for Fig. 5 the p99 of all rounds pooled; a run's quantile is over every round it recorded,
  failed ones too (its parse_logs.py keeps every round with an end);
* its failure rate is failure events per round: a run's failure events summed over its
  rounds over its rounds, averaged over runs (a round with three failed clients counts three).

Only the cells proper without a fault enter (the study ran none); check arms never do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean

import numpy as np

from pytest_ztfl.analysis import gates
from pytest_ztfl.report.calc import Analysis, mean_ci
from pytest_ztfl.report.model import Run, calibration_order

Config = tuple[str, str]  # (SEC level, NET)


@dataclass(frozen=True)
class Interval:
    """One configuration's estimate with its 95% interval; ``n`` says of what."""

    label: str
    estimate: float
    low: float
    high: float
    n: str


def plain(a: Analysis) -> list[Run]:
    """The runs the study's claims are held against: cells proper, no fault."""
    return [c.run for c in a.cells if c.run.fault is None]


def configs(
    runs: Iterable[Run], secs: Sequence[str] = (), nets: Sequence[str] = ()
) -> dict[Config, list[Run]]:
    """Runs by (SEC level, NET), limited to ``secs`` and ``nets`` when given."""
    out: dict[Config, list[Run]] = {}
    for r in runs:
        if (not secs or r.sec in secs) and (not nets or r.net in nets):
            out.setdefault((r.sec, r.net), []).append(r)
    return dict(sorted(out.items()))


def failure_share(config: Config, runs: Sequence[Run]) -> Interval | None:
    """Failed (and never run) rounds over planned rounds, Clopper-Pearson (the SLO gate's);
    None when no round was planned."""
    failed = sum(r.failed_rounds for r in runs)
    total = sum(r.rounds_denominator for r in runs)
    if not total:
        return None
    g = gates.failure_rate_gate(failed, total)
    label = "/".join(config)
    n = f"{failed} of {total} rounds, {len(runs)} cell{'s' * (len(runs) != 1)}"
    return Interval(label, g.estimate, g.ci_low, g.ci_high, n)


def failure_events_per_round(runs: Sequence[Run]) -> float:
    """The study's failure rate: per run, failure events over rounds; the mean over runs."""
    rates = [
        sum(sum(x.failures.values()) for x in r.rounds) / len(r.rounds) for r in runs if r.rounds
    ]
    return fmean(rates) if rates else math.nan


def final_accuracy(config: Config, runs: Sequence[Run]) -> Interval | None:
    """Mean final accuracy over the configuration's runs, Student-t interval; None if none
    recorded one."""
    acc = [r.final_accuracy for r in runs if r.final_accuracy is not None]
    if not acc:
        return None
    m, lo, hi = mean_ci(acc)
    return Interval("/".join(config), m, lo, hi, f"{len(acc)} runs")


def study_quantile(runs: Sequence[Run], q: float, definition: str) -> float:
    """The study's q-quantile of round duration over ``runs``: ``mean-of-runs`` (each run's
    quantile, averaged) or ``pooled`` (all rounds together); every recorded round counts."""
    per_run = [[x.duration for x in r.rounds] for r in runs if r.rounds]
    if not per_run:
        return math.nan
    if definition == "mean-of-runs":
        return fmean(float(np.quantile(d, q)) for d in per_run)
    return float(np.quantile([x for d in per_run for x in d], q))


def rounds_to_target(run: Run, target: float) -> int | None:
    """The first evaluated round whose accuracy reached ``target``; None: never."""
    return next((k for k in sorted(run.accuracy_by_round) if run.accuracy_by_round[k] >= target),
                None)  # fmt: skip


def net_rtt(a: Analysis, net: str) -> str:
    """The NET profile's measured round trip (p50) from its calibration files (one per sitting
    that measured its cells), as text; or why not."""
    refs = {r.calibration.get("ref") for r in a.loaded.runs if r.net == net}
    found = []
    for ref in sorted((x for x in refs if isinstance(x, str)), key=calibration_order):
        try:
            figures = json.loads((a.loaded.results_dir / ref).read_text()).get("figures", [])
        except (OSError, ValueError, AttributeError):
            continue
        for f in figures if isinstance(figures, list) else ():
            if isinstance(f, dict) and f.get("name") == "rtt p50":
                value = f.get("measured")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    found.append(f"{value:.1f} ms (`{ref}`, n {f.get('n', '?')})")
                break
    if found:
        return f"{net} round trip p50 {', '.join(found)}"
    return f"{net} round trip not recorded (no calibration file with an rtt p50)"
