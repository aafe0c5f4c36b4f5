"""Overhead ratios of a quantile (treatment over baseline) and the 2x2 interaction contrast
(SEC x NET), of independent samples, each with its bootstrap confidence interval. Two arms
measured in blocks are compared by pytest_ztfl.analysis.paired, which returns the same
``RatioCI``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pytest_ztfl.analysis.base import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    QUANTILE_METHOD,
    BootstrapMethod,
    FloatArray,
    as_sample,
    bootstrap_ci,
    check_confidence,
    check_q,
    finite_or_none,
    join_notes,
    jsonable,
    quantile_label,
    quantile_reliability,
)

Scale = Literal["log", "abs"]


@dataclass(frozen=True)
class RatioCI:
    """q-quantile of a treatment sample divided by the same quantile of a baseline sample.

    CI from an independent two-sample bootstrap (each sample resampled on its own), or, from
    pytest_ztfl.analysis.paired, a two-level bootstrap over ``blocks`` with rounds ``paired``;
    ``mde`` is then the smallest relative change the comparison detects with 80% power.
    """

    q: float
    estimate: float
    ci_low: float
    ci_high: float
    n_treatment: int
    n_baseline: int
    confidence: float
    method: str
    reliable: bool
    note: str = ""
    blocks: int = 1
    paired: bool = False
    mde: float = math.nan

    @property
    def label(self) -> str:
        return f"{quantile_label(self.q)} ratio"

    @property
    def excludes_one(self) -> bool:
        """True when the CI lies entirely above or below 1 (a detectable difference)."""
        return bool(self.ci_low > 1.0 or self.ci_high < 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, **jsonable(asdict(self))}


@dataclass(frozen=True)
class InteractionCI:
    """The 2x2 interaction contrast of a quantile, with its bootstrap CI.

    With q_ab the q-quantile of the cell (factor A level a, factor B level b), a, b in {0, 1}:

    * scale "log": ``ln q11 - ln q10 - ln q01 + ln q00`` = ln of (A's overhead ratio with B)
      / (A's overhead ratio without B). 0 means the ratios multiply: A costs the same
      *fraction* with or without B. ``ratio_of_ratios`` = exp(estimate).
    * scale "abs": ``q11 - q10 - q01 + q00`` = (A's extra seconds with B) - (A's extra seconds
      without B). 0 means the costs add in seconds.

    ``consistent_with_zero`` is True when the CI contains 0 (no evidence of interaction).
    """

    q: float
    scale: str
    estimate: float
    ci_low: float
    ci_high: float
    n: tuple[int, int, int, int]
    confidence: float
    method: str
    reliable: bool
    note: str = ""

    @property
    def label(self) -> str:
        return f"{quantile_label(self.q)} interaction ({self.scale})"

    @property
    def ratio_of_ratios(self) -> float:
        """exp(estimate) on the log scale; NaN on the absolute scale."""
        return math.exp(self.estimate) if self.scale == "log" else math.nan

    @property
    def consistent_with_zero(self) -> bool | None:
        if math.isnan(self.ci_low) or math.isnan(self.ci_high):
            return None
        return bool(self.ci_low <= 0.0 <= self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        d = jsonable(asdict(self))
        d["n"] = list(self.n)
        return {
            "label": self.label,
            **d,
            "ratio_of_ratios": finite_or_none(self.ratio_of_ratios),
            "consistent_with_zero": self.consistent_with_zero,
        }


def overhead_ratios(
    treatment: npt.ArrayLike,
    baseline: npt.ArrayLike,
    quantiles: Sequence[float] = (0.5, 0.99),
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    method: BootstrapMethod = "percentile",
) -> tuple[RatioCI, ...]:
    """``quantile(treatment) / quantile(baseline)`` for each quantile, with bootstrap CIs.

    The two samples are independent runs (e.g. SEC3 vs SEC0, all other factors equal), so
    the bootstrap resamples each on its own (``paired=False``). Values must be > 0.
    """
    t = as_sample(treatment, "treatment", positive=True)
    b = as_sample(baseline, "baseline", positive=True)
    qs = tuple(float(q) for q in quantiles)
    for q in qs:
        check_q(q)
    check_confidence(confidence)
    qarr = np.asarray(qs)

    def statistic(a: FloatArray, c: FloatArray, axis: int = -1) -> FloatArray:
        num = np.quantile(a, qarr, axis=axis, method=QUANTILE_METHOD)
        den = np.quantile(c, qarr, axis=axis, method=QUANTILE_METHOD)
        return np.asarray(num / den)

    est = statistic(t, b)
    low, high, note = bootstrap_ci(
        (t, b),
        statistic,
        est,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )
    out = []
    for i, q in enumerate(qs):
        reliable, why = quantile_reliability(q, (t.size, b.size), confidence)
        out.append(
            RatioCI(
                q=q,
                estimate=float(est[i]),
                ci_low=float(low[i]),
                ci_high=float(high[i]),
                n_treatment=int(t.size),
                n_baseline=int(b.size),
                confidence=confidence,
                method=method,
                reliable=reliable and not np.isnan(low[i]),
                note=join_notes(note, why),
            )
        )
    return tuple(out)


def overhead_ratio(
    treatment: npt.ArrayLike,
    baseline: npt.ArrayLike,
    q: float = 0.5,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    method: BootstrapMethod = "percentile",
) -> RatioCI:
    """One quantile's overhead ratio; see :func:`overhead_ratios`."""
    return overhead_ratios(
        treatment,
        baseline,
        (q,),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )[0]


def interaction_contrast(
    base: npt.ArrayLike,
    a_only: npt.ArrayLike,
    b_only: npt.ArrayLike,
    both: npt.ArrayLike,
    q: float = 0.5,
    *,
    scale: Scale = "log",
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    method: BootstrapMethod = "percentile",
) -> InteractionCI:
    """The 2x2 interaction contrast of the q-quantile (see :class:`InteractionCI`).

    For SEC x NET: ``base`` = (SEC0, NET0), ``a_only`` = (SEC3, NET0), ``b_only`` = (SEC0,
    NET2), ``both`` = (SEC3, NET2), other factors equal. The four samples are independent
    runs; the bootstrap resamples each on its own.
    """
    if scale not in ("log", "abs"):
        raise ValueError(f"scale must be 'log' or 'abs', not {scale!r}")
    positive = scale == "log"
    names = ("base", "a_only", "b_only", "both")
    x00, x10, x01, x11 = (
        as_sample(s, name, positive=positive)
        for s, name in zip((base, a_only, b_only, both), names, strict=True)
    )
    xs = (x00, x10, x01, x11)
    check_q(q)
    check_confidence(confidence)

    def statistic(
        s00: FloatArray, s10: FloatArray, s01: FloatArray, s11: FloatArray, axis: int = -1
    ) -> FloatArray:
        q00, q10, q01, q11 = (
            np.quantile(s, q, axis=axis, method=QUANTILE_METHOD) for s in (s00, s10, s01, s11)
        )
        if scale == "log":
            return np.asarray(np.log(q11) - np.log(q10) - np.log(q01) + np.log(q00))
        return np.asarray(q11 - q10 - q01 + q00)

    est = statistic(x00, x10, x01, x11)
    low, high, note = bootstrap_ci(
        xs,
        statistic,
        est,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )
    sizes = tuple(int(x.size) for x in xs)
    reliable, why = quantile_reliability(q, sizes, confidence)
    return InteractionCI(
        q=q,
        scale=scale,
        estimate=float(est),
        ci_low=float(low),
        ci_high=float(high),
        n=(sizes[0], sizes[1], sizes[2], sizes[3]),
        confidence=confidence,
        method=method,
        reliable=reliable and not np.isnan(low),
        note=join_notes(note, why),
    )
