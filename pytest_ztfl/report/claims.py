"""This run's measurements of the seed study's (ZeroTrust-FLBench) headline claims.

The claimed values themselves are not reproduced here (the harness does not hold the paper);
each row gives the measured value with its CI, n, the rows it comes from, and the rule for
comparing a published value with it. A ratio pools its arms over every block (data split and
seed) that holds both, by pytest_ztfl.analysis.compare: rounds paired within a block run, blocks and
rounds resampled (the pooled SLO gate's comparison). Its tail is p95, not the seed study's p99:
an honest interval for a p99 needs 368 rounds per arm. The interaction contrast is a contrast
of four pooled samples, each resampled on its own (unpaired), and says so. Check arms never
enter (report.calc keeps them apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_ztfl.analysis import gates
from pytest_ztfl.analysis.base import quantile_label
from pytest_ztfl.analysis.ratios import RatioCI, Scale, interaction_contrast
from pytest_ztfl.report.arms import RATIO_QUANTILES, Pair, arm_ratios, pair_with, pairing
from pytest_ztfl.report.calc import GROUP_SEED, Analysis
from pytest_ztfl.report.fmt import UNRELIABLE, ci_text, ratio_text
from pytest_ztfl.report.model import Run
from pytest_ztfl.sec import Sec

NOT_MEASURED = "not measured in this run"
RATIO_RULE = (
    "a published ratio outside the CI is contradicted by this run; inside it is "
    "consistent (not confirmed)"
)


@dataclass(frozen=True)
class Claim:
    topic: str
    measured: str
    n: str
    source: str
    rule: str
    note: str = ""


def _matched(arms: Sequence[Sequence[Run]]) -> tuple[list[list[float]], list[int]]:
    """Pooled durations per arm over the (data, seed) pairs every arm has; cells per arm."""
    common = set.intersection(*({(r.data, r.seed) for r in arm} for arm in arms))
    pooled, cells = [], []
    for arm in arms:
        kept = sorted((r for r in arm if (r.data, r.seed) in common), key=lambda r: r.id)
        pooled.append([d for r in kept for d in r.durations])
        cells.append(len(kept))
    return pooled, cells


def _n(names: Sequence[str], pooled: Sequence[Sequence[float]], cells: Sequence[int]) -> str:
    return " vs ".join(
        f"{name}: {len(p)} rounds / {c} cells"
        for name, p, c in zip(names, pooled, cells, strict=True)
    )


def _pattern(sec: str, net: str) -> str:
    suffix = sec.split("-", 1)[1] if "-" in sec else ""
    return f"`{sec.split('-', 1)[0]}-{net}-*{'-' + suffix if suffix else ''}`"


def _absent(topic: str, rule: str, why: str) -> Claim:
    return Claim(topic, NOT_MEASURED, "-", "-", rule, why)


def _pairs_n(names: Sequence[str], pairs: Sequence[Pair], r: RatioCI | None) -> str:
    """``SEC3/NET0: 48 rounds / 4 cells vs SEC0/NET0: 48 rounds / 4 cells; 4 blocks, paired``
    (rounds: those the comparison used: a paired block's rounds both arms completed)."""
    treat = {t.id: t for t, _ in pairs}
    base = {b.id: b for _, b in pairs}
    if r is not None:
        n_t, n_b = r.n_treatment, r.n_baseline
    else:
        n_t = sum(len(t.durations) for t in treat.values())
        n_b = sum(len(b.durations) for b in base.values())
    text = (
        f"{names[0]}: {n_t} rounds / {len(treat)} cells vs "
        f"{names[1]}: {n_b} rounds / {len(base)} cells"
    )
    if r is not None:
        text += f"; {r.blocks} block{'s' * (r.blocks != 1)}, {pairing(pairs)}"
    return text


def _ratio_claim(
    a: Analysis, topic: str, treat: tuple[str, str], base: tuple[str, str], q: float
) -> Claim:
    arms = [a.runs(*treat), a.runs(*base)]
    if not all(arms):
        missing = [f"{s} x {n}" for (s, n), arm in zip((treat, base), arms, strict=True) if not arm]
        return _absent(topic, RATIO_RULE, f"the run has no {' and no '.join(missing)} cells")
    pairs = pair_with(arms[0], arms[1])
    names = [f"{s}/{n}" for s, n in (treat, base)]
    source = f"runs.jsonl rows {_pattern(*treat)} vs {_pattern(*base)}"
    if not pairs:
        return Claim(
            topic, NOT_MEASURED, "-", source, RATIO_RULE, "no data split and seed has both arms"
        )
    rs, why = arm_ratios(pairs, GROUP_SEED, (q,), noise=a.noise)
    if not rs:
        return Claim(topic, NOT_MEASURED, _pairs_n(names, pairs, None), source, RATIO_RULE, why)
    r = rs[0]
    return Claim(
        topic,
        ratio_text(r),
        _pairs_n(names, pairs, r),
        source,
        RATIO_RULE,
        "" if r.reliable else r.note,
    )


def _interaction(a: Analysis, sec3: str, q: float, scale: Scale) -> Claim:
    what = "seconds" if scale == "abs" else "log ratio"
    topic = (
        f"{sec3} and NET2 costs are additive ({quantile_label(q)}, {what}: "
        f"(SEC3+NET2) - SEC3 - NET2 + baseline)"
    )
    rule = (
        "0 inside the CI: consistent with additive costs (in seconds)"
        if scale == "abs"
        else "0 inside the CI: the overhead ratios multiply (same relative cost with NET2)"
    )
    cells = [(s, n) for s in (Sec.SEC0, sec3) for n in ("NET0", "NET2")]
    arms = [a.runs(s, n) for s, n in cells]
    if not all(arms):
        absent = [f"{s} x {n}" for (s, n), arm in zip(cells, arms, strict=True) if not arm]
        return _absent(topic, rule, f"needs SEC0/{sec3} x NET0/NET2; no {', '.join(absent)}")
    pooled, counts = _matched(arms)
    base, b_only, a_only, both = pooled  # order of ``cells``: (S0,N0) (S0,N2) (S3,N0) (S3,N2)
    names = [f"{s}/{n}" for s, n in cells]
    n_text = _n(names, pooled, counts)
    source = "runs.jsonl rows " + ", ".join(_pattern(s, n) for s, n in cells)
    unpaired = (
        "unpaired: the four pooled samples are resampled independently (their blocks differ "
        "in NET, so no rounds pair); seconds-scale contrasts of p99 are descriptive"
    )
    try:
        ic = interaction_contrast(base, a_only, b_only, both, q, scale=scale, seed=GROUP_SEED)
    except ValueError as exc:
        return Claim(topic, NOT_MEASURED, n_text, source, rule, f"{exc}; {unpaired}")
    unit = " s" if scale == "abs" else ""
    value = f"{ic.estimate:+.3g}{unit} {ci_text(ic.ci_low, ic.ci_high, '{:+.3g}')}"
    if scale == "log" and math.isfinite(ic.estimate):
        value += f" (ratio of ratios {ic.ratio_of_ratios:.3g}x)"
    if not ic.reliable:
        value += UNRELIABLE
    note = unpaired if ic.reliable else f"{ic.note}; {unpaired}"
    return Claim(topic, value, n_text, source, rule, note)


def _failure_claim(a: Analysis, sec: str | None) -> Claim:
    runs = a.runs(sec)
    label = sec or "all cells"
    topic = f"per-round failure rate, {label}"
    failed = sum(r.failed_rounds for r in runs)
    total = sum(r.rounds_denominator for r in runs)
    g = gates.failure_rate_gate(failed, total)
    value = (
        f"{100 * g.estimate:.3g}% {ci_text(100 * g.ci_low, 100 * g.ci_high, '{:.3g}%')}"
        f" ({failed} failed); cells successful {sum(r.success for r in runs)}/{len(runs)}"
        if total
        else NOT_MEASURED
    )
    rows = f"rows `{sec}-*`" if sec else "all rows"
    return Claim(
        topic,
        value,
        f"{total} planned rounds / {len(runs)} cells",
        f"runs.jsonl {rows} (metrics.rounds[].ok)",
        f"SLO <= {100 * gates.DEFAULT_FAILURE_RATE_LIMIT:g}%; verdict here: "
        f"{g.verdict.value} (Clopper-Pearson CI; FAIL only if the CI is above the limit)",
    )


def claims(a: Analysis) -> list[Claim]:
    sec3s = [s for s in a.secs if s.split("-")[0] == Sec.SEC3] or [Sec.SEC3]
    out = []
    for s3 in sec3s:
        for net in a.nets or ("NET0",):
            for q in RATIO_QUANTILES:
                out.append(
                    _ratio_claim(
                        a,
                        f"{s3} vs SEC0 {quantile_label(q)} round-duration overhead at {net}",
                        (s3, net),
                        (Sec.SEC0, net),
                        q,
                    )
                )
    for q in RATIO_QUANTILES:
        out.append(
            _ratio_claim(
                a,
                f"NET2 vs NET0 {quantile_label(q)} round-duration overhead at SEC0",
                (Sec.SEC0, "NET2"),
                (Sec.SEC0, "NET0"),
                q,
            )
        )
    for s3 in sec3s:
        out.append(_interaction(a, s3, 0.5, "abs"))
        out.append(_interaction(a, s3, 0.99, "abs"))
        out.append(_interaction(a, s3, 0.5, "log"))
    out.append(_failure_claim(a, None))
    out.extend(_failure_claim(a, s) for s in a.secs)
    return out
