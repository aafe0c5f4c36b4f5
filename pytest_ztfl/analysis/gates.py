"""SLO gates: turn an estimate with a confidence interval into PASS / INCONCLUSIVE / FAIL.

The rule, for an SLO of the form "metric <= limit":

* PASS          the point estimate is <= limit;
* FAIL          the estimate is > limit and so is the CI's lower bound (clear evidence);
* INCONCLUSIVE  the estimate is > limit but the CI reaches down to the limit, or the CI is
                missing or flagged unreliable (e.g. a p99 from too few rounds).

The plugin turns FAIL into a test failure and INCONCLUSIVE into a visible warning. Pure
logic: no pytest, no cluster. Rationale and the multiplicity caveat: docs/statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from scipy import stats as sps

from pytest_ztfl.analysis.base import DEFAULT_CONFIDENCE
from pytest_ztfl.analysis.ratios import RatioCI

__all__ = [
    "DEFAULT_FAILURE_RATE_LIMIT",
    "GateResult",
    "Verdict",
    "bonferroni_confidence",
    "failure_rate_gate",
    "overhead_gate",
    "upper_limit_gate",
]

DEFAULT_FAILURE_RATE_LIMIT = 0.02
_CI_NAMES = {"exact": "Clopper-Pearson", "wilson": "Wilson"}


class Verdict(StrEnum):
    PASS = "pass"
    INCONCLUSIVE = "inconclusive"
    FAIL = "fail"


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate, with the numbers behind it and a one-line message."""

    metric: str
    verdict: Verdict
    estimate: float
    ci_low: float
    ci_high: float
    limit: float
    n: tuple[int, ...]
    confidence: float
    message: str

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAIL

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "metric": self.metric,
            "verdict": self.verdict.value,
            "estimate": num(self.estimate),
            "ci_low": num(self.ci_low),
            "ci_high": num(self.ci_high),
            "limit": self.limit,
            "n": list(self.n),
            "confidence": self.confidence,
            "message": self.message,
        }


def upper_limit_gate(
    metric: str,
    estimate: float,
    ci_low: float,
    ci_high: float,
    limit: float,
    *,
    n: tuple[int, ...],
    confidence: float = DEFAULT_CONFIDENCE,
    reliable: bool = True,
    note: str = "",
    fmt: Callable[[float], str] = "{:.3g}".format,
) -> GateResult:
    """Apply the rule to "``metric`` must be <= ``limit``" (see the module docstring).

    ``reliable=False`` (the CI is known to be too narrow) can turn a FAIL into INCONCLUSIVE,
    never a PASS into anything else. ``note`` is appended to the message.
    """
    if math.isnan(limit):
        raise ValueError("limit is NaN")
    ci_known = not (math.isnan(ci_low) or math.isnan(ci_high))

    def show(v: float) -> str:
        return "n/a" if math.isnan(v) else fmt(v)

    why = ""
    # Checked first so that FAIL always implies estimate > limit, even in the rare case of a
    # bootstrap interval that does not contain its own point estimate.
    if not math.isnan(estimate) and estimate <= limit:
        verdict = Verdict.PASS
    elif math.isnan(estimate):
        verdict, why = Verdict.INCONCLUSIVE, "no estimate"
    elif not ci_known:
        verdict, why = Verdict.INCONCLUSIVE, "above the limit but no CI"
    elif ci_low > limit:
        if reliable:
            verdict = Verdict.FAIL
        else:
            verdict, why = Verdict.INCONCLUSIVE, "CI excludes the limit but is unreliable"
    else:
        verdict, why = Verdict.INCONCLUSIVE, "above the limit but the CI includes it"

    rel = {Verdict.PASS: "<=", Verdict.FAIL: ">", Verdict.INCONCLUSIVE: ">"}[verdict]
    if verdict is Verdict.INCONCLUSIVE and math.isnan(estimate):
        rel = "?"
    ci = f"[{show(ci_low)}, {show(ci_high)}]" if ci_known else "n/a"
    n_text = " vs ".join(str(k) for k in n)
    parts = [
        f"{verdict.value.upper()} {metric}: {show(estimate)} "
        f"({confidence:.0%} CI {ci}) {rel} limit {show(limit)}, n={n_text}",
    ]
    if why:
        parts.append(why)
    if note:
        parts.append(note)
    return GateResult(
        metric=metric,
        verdict=verdict,
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        limit=limit,
        n=n,
        confidence=confidence,
        message="; ".join(parts),
    )


def failure_rate_gate(
    failures: int,
    rounds: int,
    *,
    limit: float = DEFAULT_FAILURE_RATE_LIMIT,
    confidence: float = DEFAULT_CONFIDENCE,
    method: Literal["exact", "wilson"] = "exact",
    metric: str = "per-round failure rate",
) -> GateResult:
    """Gate "failures / rounds <= limit" with a binomial CI.

    ``method="exact"`` is Clopper-Pearson (never under-covers; the default), ``"wilson"`` the
    Wilson score interval, both from ``scipy.stats.binomtest(...).proportion_ci``. Zero rounds
    give INCONCLUSIVE (nothing was measured), not an error.
    """
    if not 0.0 <= limit < 1.0:
        raise ValueError(f"failure-rate limit must be in [0, 1), not {limit}")
    if rounds < 0 or not 0 <= failures <= max(rounds, 0):
        raise ValueError(f"need 0 <= failures <= rounds, got {failures} of {rounds}")

    def pct(v: float) -> str:
        return f"{100 * v:.3g}%"

    if rounds == 0:
        return upper_limit_gate(
            metric,
            math.nan,
            math.nan,
            math.nan,
            limit,
            n=(0,),
            confidence=confidence,
            note="no rounds measured",
            fmt=pct,
        )
    ci = sps.binomtest(failures, rounds).proportion_ci(confidence_level=confidence, method=method)
    return upper_limit_gate(
        metric,
        failures / rounds,
        float(ci.low),
        float(ci.high),
        limit,
        n=(rounds,),
        confidence=confidence,
        note=f"{failures} failed of {rounds} rounds ({_CI_NAMES[method]} CI)",
        fmt=pct,
    )


def overhead_gate(ratio: RatioCI, limit: float, *, metric: str | None = None) -> GateResult:
    """Gate "overhead ratio <= limit" (e.g. SEC3/SEC0 p99 round duration <= 1.5).

    ``ratio`` comes from :func:`pytest_ztfl.analysis.ratios.overhead_ratio`; an unreliable
    ratio CI (too few rounds for that quantile) can give at worst INCONCLUSIVE.
    """
    if not limit > 0:
        raise ValueError(f"overhead limit must be > 0, not {limit}")
    return upper_limit_gate(
        metric or f"{ratio.label} vs baseline",
        ratio.estimate,
        ratio.ci_low,
        ratio.ci_high,
        limit,
        n=(ratio.n_treatment, ratio.n_baseline),
        confidence=ratio.confidence,
        reliable=ratio.reliable,
        note=ratio.note,
        fmt="{:.3g}x".format,
    )


def bonferroni_confidence(m: int, family_confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Per-gate two-sided confidence so that m gates together falsely FAIL with probability
    at most (1 - family_confidence) / 2 (Bonferroni over the one-sided lower bounds)."""
    if m < 1:
        raise ValueError(f"m must be >= 1, not {m}")
    if not 0.0 < family_confidence < 1.0:
        raise ValueError(f"family_confidence must be in (0, 1), not {family_confidence}")
    return 1.0 - (1.0 - family_confidence) / m
