"""The rule that turns this run's interval into a verdict on one of the seed study's claims,
and the verdicts on the claims that are not a ratio of two arms: failure shares and final
accuracy per configuration, the TTA order of the SEC levels, rounds to the target under a
NET, the study's own attempts and emulated network. report.claims has the ratios and gathers
every verdict.

A verdict is ``consistent`` (the study's value, or a value of its claimed range, lies inside
our interval), ``contradicted`` (outside), or ``not testable here`` with the reason. A claim
about every configuration is consistent only if each configuration's interval is.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from pytest_ztfl.analysis.base import min_n_for_quantile_ci, quantile_label
from pytest_ztfl.analysis.tta import TTAEstimate
from pytest_ztfl.report.calc import Analysis, mean_ci, tta_of
from pytest_ztfl.report.fmt import ci_text, num
from pytest_ztfl.report.measures import (
    Config,
    Interval,
    configs,
    failure_events_per_round,
    failure_share,
    final_accuracy,
    net_rtt,
    plain,
    rounds_to_target,
)
from pytest_ztfl.report.model import Run
from pytest_ztfl.report.study import Claimed, StudyClaim

NOT_TESTABLE = "not testable here"
NOT_MEASURED = "not measured in this run"


@dataclass(frozen=True)
class Verdict:
    """One row of the claims table: the claim, what this run measured of it with its 95%
    interval, the same quantity by the study's definition where that differs (``theirs``),
    the verdict, n, and a note."""

    claim: StudyClaim
    label: str  # the claim's id (with the SEC label when the run holds several mTLS modes)
    measured: str
    theirs: str
    verdict: str
    n: str = "-"
    note: str = ""


def untestable(
    c: StudyClaim, why: str, measured: str = "-", n: str = "-", note: str = "",
    label: str | None = None,
) -> Verdict:  # fmt: skip
    return Verdict(c, label or c.id, measured, "-", f"{NOT_TESTABLE}: {why}", n, note)


def judge(claimed: Claimed, lo: float, hi: float, qualifier: str = "") -> str:
    """``consistent`` when [lo, hi] holds a value the claim admits, else ``contradicted``;
    ``qualifier`` in brackets after it."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{NOT_TESTABLE}: no interval"
    word = "consistent" if claimed.meets(lo, hi) else "contradicted"
    return f"{word} ({qualifier})" if qualifier else word


def quantile_limits(q: float, n: int) -> tuple[str, str]:
    """(why a q-quantile of ``n`` rounds per arm cannot test a claim, or ""; the verdict's
    qualifier when it can, but only descriptively, or ""). Below 1/(1-q) rounds (100 for a
    p99) the quantile is the largest round or next to it; below analysis.base's
    ``min_n_for_quantile_ci`` (368) its interval cannot reach beyond the sample's extremes."""
    label = quantile_label(q)
    least = round(1 / (1 - max(q, 1 - q)))
    need = min_n_for_quantile_ci(q)
    if n < least:
        return (
            f"too few rounds for {label} ({n} per arm; under {least} the {label} is the "
            f"largest round or next to it, and an honest 95% interval needs {need})",
            "",
        )
    if n < need:
        return "", f"descriptive: {label} of {n} rounds per arm, an honest interval needs {need}"
    return "", ""


def quantile_verdict(claimed: Claimed, q: float, n: int, lo: float, hi: float) -> str:
    """The verdict on a claim about a q-quantile from ``n`` rounds per arm: not testable, or
    judged (marked descriptive when ``n`` is short of an honest interval)."""
    too_few, qualifier = quantile_limits(q, n)
    return f"{NOT_TESTABLE}: {too_few}" if too_few else judge(claimed, lo, hi, qualifier)


def contradicts(c: StudyClaim) -> str:
    return f" (the study contradicts it: {', '.join(c.contradicts)})" if c.contradicts else ""


def pct(v: float) -> str:
    return num(100 * v, "{:.3g}") + "%"


def _distance(claimed: Claimed, x: float) -> float:
    return max(claimed.low - x, x - claimed.high, 0.0)


def _every(
    c: StudyClaim, found: Sequence[Interval], fmt: Callable[[float], str]
) -> tuple[str, str, str]:
    """(measured, verdict, n) of a claim each configuration's interval is held to: the
    configuration farthest from the claim is shown; the contradicting ones are named."""
    judged = [f for f in found if math.isfinite(f.low) and math.isfinite(f.high)]
    if not judged:
        shown = "; ".join(f"{f.label} {fmt(f.estimate)} ({f.n})" for f in found) or "-"
        return shown, f"{NOT_TESTABLE}: no interval (one run per configuration)", "-"
    worst = max(judged, key=lambda f: _distance(c.claimed, f.estimate))
    text = f"{worst.label} {fmt(worst.estimate)} [{fmt(worst.low)}, {fmt(worst.high)}]"
    if len(found) > 1:
        text = f"farthest from the claim of {len(found)} configurations: {text}"
    off = [f.label for f in judged if not c.claimed.meets(f.low, f.high)]
    skipped = len(found) - len(judged)
    extra = f"; {skipped} configuration(s) without an interval" if skipped else ""
    if off:
        return text, f"contradicted ({', '.join(off)}{extra})", worst.n
    every = f"all {len(judged)} configurations" if len(judged) > 1 else judged[0].label
    return text, f"consistent ({every}{extra})", worst.n


def _scope(a: Analysis, c: StudyClaim) -> tuple[dict[Config, list[Run]], str]:
    """The claim's configurations present in the run; what of its scope the run lacks."""
    runs = plain(a)
    found = configs(runs, c.secs, c.nets)
    wanted = [(s, n) for s in (c.secs or ()) for n in (c.nets or a.nets)]
    lacking = [f"{s}/{n}" for s, n in wanted if (s, n) not in found]
    return found, f"no {', '.join(lacking)} cells in this run" if lacking else ""


def failures(a: Analysis, c: StudyClaim) -> Verdict:
    scope, lacking = _scope(a, c)
    if not scope:
        return untestable(c, f"{NOT_MEASURED}: {lacking or 'no cells'}")
    found = [x for cfg, runs in scope.items() if (x := failure_share(cfg, runs)) is not None]
    if not found:
        return untestable(c, f"{NOT_MEASURED}: no planned rounds")
    measured, verdict, n = _every(c, found, pct)
    theirs = {"/".join(cfg): failure_events_per_round(runs) for cfg, runs in scope.items()}
    top = max(theirs, key=lambda k: theirs[k] if math.isfinite(theirs[k]) else -1.0)
    their_text = f"failure events per round, mean over runs: highest {top} {pct(theirs[top])}"
    return Verdict(c, c.id, measured, their_text, verdict, n, lacking)


def accuracy(a: Analysis, c: StudyClaim) -> Verdict:
    scope, lacking = _scope(a, c)
    found = [x for cfg, runs in scope.items() if (x := final_accuracy(cfg, runs)) is not None]
    if not found:
        return untestable(c, f"{NOT_MEASURED}: no final accuracy recorded")
    measured, verdict, n = _every(c, found, lambda v: num(v, "{:.4f}"))
    planned = sorted({r.rounds_planned for runs in scope.values() for r in runs})
    if c.needs_rounds is not None and planned != [c.needs_rounds]:
        why = (
            f"the study's value is after {c.needs_rounds} rounds; this run's cells ran "
            f"{', '.join(map(str, planned))}"
        )
        return untestable(c, why, measured, n, lacking)
    return Verdict(c, c.id, measured, "-", verdict, n, lacking)


def _target(a: Analysis, c: StudyClaim) -> str:
    """Why the run's accuracy target is not the claim's, or ""."""
    targets = sorted({r.target for r in plain(a)}, key=lambda t: -1.0 if t is None else t)
    if targets == [c.needs_target]:
        return ""
    shown = ", ".join("not recorded" if t is None else pct(t) for t in targets) or "none"
    return f"this run's accuracy target is {shown}, the study's {pct(c.needs_target or 0.0)}"


def _tta(t: TTAEstimate | None) -> str:
    if t is None or not math.isfinite(t.estimate):
        return "not reached"
    return f"{num(t.estimate)} s {ci_text(t.ci_low, t.ci_high)}"


def _fastest_reached(levels: dict[str, TTAEstimate | None]) -> str:
    """The study's TTA: the mean over the runs that reached the target (the others dropped,
    as pandas drops their missing value); the level with the smallest."""
    means = {s: t.mean_reached for s, t in levels.items() if t and math.isfinite(t.mean_reached)}
    if not means:
        return "no level reached the target"
    best = min(means, key=lambda s: means[s])
    return f"fastest by the mean over runs that reached it: {best} ({num(means[best])} s)"


def tta_order(a: Analysis, c: StudyClaim) -> Verdict:
    """The claimed level is fastest unless another level's interval lies wholly below its
    interval at some NET (non-overlapping intervals: a conservative test)."""
    by_net: dict[str, dict[str, TTAEstimate | None]] = {}
    for (sec, net), runs in configs(plain(a)).items():
        by_net.setdefault(net, {})[sec] = tta_of(runs, a.loaded)[0]
    measured = "; ".join(
        f"{net}: " + ", ".join(f"{s} {_tta(t)}" for s, t in levels.items())
        for net, levels in by_net.items()
    ) or "-"
    wrong = _target(a, c)
    if wrong:
        return untestable(c, wrong, measured)
    fastest = c.fastest or ""
    faster: list[str] = []
    judged: list[str] = []
    for net, levels in by_net.items():
        base = levels.get(fastest)
        if base is None or not (math.isfinite(base.ci_low) and math.isfinite(base.ci_high)):
            continue
        judged.append(net)
        faster += [
            f"{s}/{net}"
            for s, t in levels.items()
            if s != fastest and t is not None and math.isfinite(t.ci_high)
            and t.ci_high < base.ci_low
        ]  # fmt: skip
    theirs = "; ".join(f"{net}: {_fastest_reached(lv)}" for net, lv in by_net.items()) or "-"
    n = f"{sum(len(r) for r in configs(plain(a)).values())} cells"
    if not judged:
        why = f"{fastest}'s time to the target has no interval at any NET (reached by < 2 runs)"
        return untestable(c, why, measured, n)
    verdict = f"contradicted ({', '.join(faster)} faster)" if faster else (
        f"consistent (no level's interval below {fastest}'s at {', '.join(judged)})")
    return Verdict(c, c.id, measured, theirs, verdict, n)


def convergence(a: Analysis, c: StudyClaim) -> Verdict:
    """Rounds to the target, the treatment NET's run minus the baseline NET's run of the same
    SEC level, mTLS mode, data split and seed; mean over pairs, Student-t interval."""
    t_net, b_net = c.treatment.net, c.baseline.net
    absent = [n for n in (t_net, b_net) if n not in a.nets]
    if absent:
        return untestable(c, f"{', '.join(map(str, absent))} not in this run")
    wrong = _target(a, c)
    if wrong:
        return untestable(c, wrong)
    target = c.needs_target or 0.0
    runs = plain(a)
    base = {(r.sec, r.mtls, r.data, r.seed): r for r in runs if r.net == b_net}
    diffs: list[int] = []
    unreached = 0
    for r in (r for r in runs if r.net == t_net):
        b = base.get((r.sec, r.mtls, r.data, r.seed))
        if b is None:
            continue
        kt, kb = rounds_to_target(r, target), rounds_to_target(b, target)
        if kt is None or kb is None:
            unreached += 1
        else:
            diffs.append(kt - kb)
    note = f"{unreached} pair(s) left out: a run never reached the target" if unreached else ""
    evals = sorted({k for r in runs for k in r.accuracy_by_round})
    # the usual gap between evaluations (the last round is evaluated too, off the step)
    steps = Counter(y - x for x, y in pairwise(evals)).most_common(1)
    step = steps[0][0] if steps else 0
    every = f"; evaluated every {step} rounds" if step else ""
    n = f"{len(diffs)} pairs{every}"
    if len(diffs) < 2:
        return untestable(c, f"{len(diffs)} pair(s) reached the target in both runs: no interval",
                          n=n, note=note)  # fmt: skip
    m, lo, hi = mean_ci(diffs)
    measured = f"{m:+.3g} rounds {ci_text(lo, hi, '{:+.3g}')}"
    return Verdict(c, c.id, measured, "-", judge(c.claimed, lo, hi), n, note)


def attempts(a: Analysis, c: StudyClaim) -> Verdict:
    runs = plain(a)
    ours = f"this run: {len(runs)} cells, {sum(r.success for r in runs)} successful"
    return untestable(c, f"a claim about the study's own experiments{contradicts(c)}", ours)


def setting(a: Analysis, c: StudyClaim) -> Verdict:
    if c.net not in a.nets:
        return untestable(c, f"{c.net} not in this run")
    why = f"the study's own emulated network, not a measured effect{contradicts(c)}"
    return untestable(c, why, net_rtt(a, c.net or ""))
