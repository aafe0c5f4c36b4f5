"""This run's verdict on every quantitative claim of the seed study (ZeroTrust-FLBench), the
claims being data (report.study, ``study_claims.toml``).

A ratio of round-duration quantiles (a SEC level over SEC0, NET2 over NET0, non-IID over IID)
is report.arms.arm_ratios with the run's instance noise, the comparison every other table of the
report uses: each treatment run with the run of its block that differs only in what the claim
compares (same data split and seed; for a data-split claim, same SEC level, NET and seed),
rounds paired within a block run, blocks and rounds resampled, bootstrap seed 0. Beside it, the
same ratio by the study's definition of the quantile (report.measures). A p99 from fewer than
368 rounds per arm is descriptive and its verdict says so; from fewer than 100 the claim is not
testable (report.verdicts.quantile_limits). The additivity claim is the 2x2 interaction contrast
in seconds, an unpaired bootstrap of four pooled samples (their blocks differ in NET, so no
rounds pair). Every other kind of claim is report.verdicts'. Check arms never enter, nor cells
with a fault.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_ztfl.analysis.base import quantile_label
from pytest_ztfl.analysis.ratios import RatioCI, interaction_contrast
from pytest_ztfl.report.arms import Pair, arm_ratios, pairing
from pytest_ztfl.report.calc import GROUP_SEED, Analysis
from pytest_ztfl.report.fmt import UNRELIABLE, ci_text, ratio_text
from pytest_ztfl.report.measures import study_quantile
from pytest_ztfl.report.model import Run
from pytest_ztfl.report.study import SIDE_KEYS, Side, StudyClaim, load_claims
from pytest_ztfl.report.verdicts import (
    NOT_MEASURED,
    Verdict,
    accuracy,
    attempts,
    convergence,
    failures,
    quantile_verdict,
    setting,
    tta_order,
    untestable,
)
from pytest_ztfl.sec import Sec

DEFINITION_NAMES = {
    "mean-of-runs": "the mean over runs of each run's {q}",
    "pooled": "the {q} of all rounds pooled",
}


def _labels(a: Analysis, sec: str | None) -> list[str]:
    """The run's SEC labels of level ``sec`` (one per mTLS mode when it holds several)."""
    if sec is None:
        return [""]
    return [s for s in a.secs if s.split("-", 1)[0] == sec]


def _arm(a: Analysis, side: Side, label: str) -> list[Run]:
    return [
        c.run
        for c in a.cells
        if c.run.fault is None
        and (side.sec is None or c.sec == label)
        and (side.net is None or c.run.net == side.net)
        and (side.data is None or c.run.data == side.data)
    ]


def _absent(a: Analysis, *sides: Side) -> str:
    """Why the run holds no arm of a side, or ""."""
    for side in sides:
        if side.net is not None and side.net not in a.nets:
            return f"{side.net} not in this run"
        if side.sec is not None and not _labels(a, side.sec):
            return f"{NOT_MEASURED}: no {side.sec} cells"
        if side.data is not None and side.data not in a.datas:
            return f"{NOT_MEASURED}: no {side.data} cells"
    return ""


def _pairs(a: Analysis, treat: Sequence[Run], base: Sequence[Run], fixed: set[str]) -> list[Pair]:
    """Each treatment run (in id order) with the baseline run that differs from it only in
    what the claim's sides fix (``fixed``, of sec, net, data): for sides that differ in SEC
    level or NET, report.arms.pair_with's blocks (same data split and seed)."""
    label = {c.run.id: c.sec for c in a.cells}

    def key(r: Run) -> tuple[object, ...]:
        parts = {"sec": label[r.id], "net": r.net, "data": r.data}
        return (*(v for k, v in parts.items() if k not in fixed), r.seed)

    index = {key(b): b for b in base}
    return [(t, b) for t in sorted(treat, key=lambda r: r.id) if (b := index.get(key(t)))]


def _pairs_n(names: tuple[str, str], pairs: Sequence[Pair], r: RatioCI) -> str:
    """``SEC3/NET0: 48 rounds / 4 cells vs SEC0/NET0: 48 rounds / 4 cells; 4 blocks, paired``
    (rounds: those the comparison used)."""
    n_t, n_b = len({t.id for t, _ in pairs}), len({b.id for _, b in pairs})
    return (
        f"{names[0]}: {r.n_treatment} rounds / {n_t} cells vs "
        f"{names[1]}: {r.n_baseline} rounds / {n_b} cells; "
        f"{r.blocks} block{'s' * (r.blocks != 1)}, {pairing(pairs)}"
    )


def _theirs(c: StudyClaim, pairs: Sequence[Pair], q: float) -> str:
    """The same ratio by the study's definition of the quantile, over the same runs."""
    definition = c.definition or "mean-of-runs"
    treat = list({t.id: t for t, _ in pairs}.values())
    base = list({b.id: b for _, b in pairs}.values())
    t, b = study_quantile(treat, q, definition), study_quantile(base, q, definition)
    name = DEFINITION_NAMES[definition].format(q=quantile_label(q))
    return f"{t / b:.3f}x ({name}, every recorded round)" if b > 0 else "-"


def _ratio(a: Analysis, c: StudyClaim) -> list[Verdict]:
    t, b = c.treatment, c.baseline
    q = c.q or 0.5
    why = _absent(a, t, b)
    if why:
        return [untestable(c, why)]
    fixed = {k for k in SIDE_KEYS if getattr(t, k) is not None or getattr(b, k) is not None}
    labels = _labels(a, t.sec)
    out = []
    for label in labels:
        name = f"{c.id} [{label}]" if len(labels) > 1 else c.id
        pairs = _pairs(a, _arm(a, t, label), _arm(a, b, b.sec or ""), fixed)
        if not pairs:
            out.append(untestable(c, f"{NOT_MEASURED}: no block holds both arms", label=name))
            continue
        rs, why = arm_ratios(pairs, GROUP_SEED, (q,), noise=a.noise)
        if not rs:
            out.append(untestable(c, f"{NOT_MEASURED}: {why}", label=name))
            continue
        r = rs[0]
        n = min(r.n_treatment, r.n_baseline)
        verdict = quantile_verdict(c.claimed, q, n, r.ci_low, r.ci_high)
        theirs = _theirs(c, pairs, q)
        names = (Side(label or t.sec, t.net, t.data).text(), b.text())
        out.append(
            Verdict(c, name, ratio_text(r), theirs, verdict, _pairs_n(names, pairs, r), r.note)
        )
    return out


def _matched(arms: Sequence[Sequence[Run]]) -> list[list[Run]]:
    """Each arm's runs over the (data, seed) pairs every arm has, in id order."""
    common = set.intersection(*({(r.data, r.seed) for r in arm} for arm in arms))
    return [sorted((r for r in arm if (r.data, r.seed) in common), key=lambda r: r.id)
            for arm in arms]  # fmt: skip


def _interaction(a: Analysis, c: StudyClaim) -> list[Verdict]:
    sec, net = c.sec or Sec.SEC3, c.net or "NET2"
    q = c.q or 0.99
    sides = [Side(Sec.SEC0, "NET0"), Side(Sec.SEC0, net), Side(sec, "NET0"), Side(sec, net)]
    why = _absent(a, *sides)
    if why:
        return [untestable(c, why)]
    out = []
    labels = _labels(a, sec)
    for label in labels:
        name = f"{c.id} [{label}]" if len(labels) > 1 else c.id
        arms = _matched([_arm(a, s, label if s.sec == sec else Sec.SEC0) for s in sides])
        if not all(arms):
            why = f"{NOT_MEASURED}: no data split and seed has all four arms"
            out.append(untestable(c, why, label=name))
            continue
        base, b_only, a_only, both = ([d for r in arm for d in r.durations] for arm in arms)
        n = " vs ".join(
            f"{s.text()}: {sum(len(r.durations) for r in arm)} rounds / {len(arm)} cells"
            for s, arm in zip(sides, arms, strict=True)
        )
        unpaired = "unpaired: the four pooled samples are resampled independently"
        try:
            ic = interaction_contrast(base, a_only, b_only, both, q, scale="abs", seed=GROUP_SEED)
        except ValueError as exc:
            out.append(untestable(c, f"{NOT_MEASURED}: {exc}", n=n, label=name))
            continue
        verdict = quantile_verdict(c.claimed, q, min(ic.n), ic.ci_low, ic.ci_high)
        measured = f"{ic.estimate:+.3g} s {ci_text(ic.ci_low, ic.ci_high, '{:+.3g}')}"
        measured += "" if ic.reliable else UNRELIABLE
        d = c.definition or "mean-of-runs"
        qs = [study_quantile(arm, q, d) for arm in arms]
        theirs = (f"{qs[3] - qs[2] - qs[1] + qs[0]:+.3g} s "
                  f"({DEFINITION_NAMES[d].format(q=quantile_label(q))})")  # fmt: skip
        note = f"{ic.note}; {unpaired}" if ic.note else unpaired
        out.append(Verdict(c, name, measured, theirs, verdict, n, note))
    return out


def verdicts(a: Analysis, claims: Sequence[StudyClaim] | None = None) -> list[Verdict]:
    """One verdict per claim (one per mTLS mode for a SEC2/SEC3 ratio when the run holds
    several), in the claims file's order."""
    out: list[Verdict] = []
    for c in load_claims() if claims is None else claims:
        if c.metric == "duration" and c.kind in ("ratio", "ordering"):
            out += _ratio(a, c)
        elif c.kind == "interaction":
            out += _interaction(a, c)
        elif c.metric == "failed_rounds":
            out.append(failures(a, c))
        elif c.metric == "final_accuracy":
            out.append(accuracy(a, c))
        elif c.metric == "tta":
            out.append(tta_order(a, c))
        elif c.kind == "difference":
            out.append(convergence(a, c))
        elif c.kind == "count":
            out.append(attempts(a, c))
        else:
            out.append(setting(a, c))
    return out
