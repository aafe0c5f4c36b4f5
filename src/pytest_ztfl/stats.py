"""Statistics for round durations and time-to-accuracy: quantiles, overhead ratios, the
SEC x NET interaction contrast and censored TTA means, each with a confidence interval.

Pure functions over numbers (no pytest, no cluster). Every interval comes from
``scipy.stats.bootstrap`` (seeded, so reruns give identical numbers), except the censored TTA
mean, whose interval is analytic (Kaplan-Meier restricted mean with its Greenwood-type
variance). Results are small frozen dataclasses with ``to_dict()`` for JSON. Degenerate input
(n=1, all-equal values, a sample too small for a tail quantile) never raises: the result
says so in ``reliable``/``note``. Empty, non-finite or (for ratios) non-positive input is a
caller error and raises ``ValueError``. The methods and their reasons are in
docs/statistics.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_N_RESAMPLES",
    "DEFAULT_QUANTILES",
    "InteractionCI",
    "QuantileCI",
    "RatioCI",
    "SampleSummary",
    "SeedSummary",
    "TTAEstimate",
    "interaction_contrast",
    "min_n_for_quantile_ci",
    "overhead_ratio",
    "overhead_ratios",
    "pool_seeds",
    "quantile_cis",
    "quantile_label",
    "summarize_seeds",
    "tta_mean",
]

FloatArray = npt.NDArray[np.float64]
BootstrapMethod = Literal["percentile", "BCa", "basic"]
Scale = Literal["log", "abs"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)
DEFAULT_CONFIDENCE = 0.95
DEFAULT_N_RESAMPLES = 2000
# numpy's default (Hyndman-Fan type 7), the same as np.percentile/pandas; fixed so that
# estimates and bootstrap replicates use one definition.
_QUANTILE_METHOD: Final = "linear"


def quantile_label(q: float) -> str:
    """``0.5 -> "p50"``, ``0.99 -> "p99"``, ``0.999 -> "p99.9"``."""
    return "p" + f"{q * 100:.10g}"


def min_n_for_quantile_ci(q: float, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """Smallest n for which a two-sided ``confidence`` CI of the q-quantile can be honest.

    A bootstrap (or any order-statistic) interval never reaches beyond the sample's extreme
    values. The sample maximum lies below the true q-quantile with probability q**n, so the
    upper bound can only hold with probability (1 - alpha/2) when q**n <= alpha/2 (likewise
    (1-q)**n for the minimum). p50: 6, p95: 72, p99: 368 at 95%.
    """
    _check_q(q)
    _check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    return math.ceil(math.log(tail) / math.log(max(q, 1.0 - q)) - 1e-12)


# ---------------------------------------------------------------------------------------
# result types


@dataclass(frozen=True)
class QuantileCI:
    """One quantile of one sample with its bootstrap CI.

    ``reliable`` is False when n < ``min_n_for_quantile_ci(q)`` (or no CI could be computed);
    the interval is then still reported but should not be trusted, and ``note`` says why.
    """

    q: float
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float
    method: str
    reliable: bool
    note: str = ""

    @property
    def label(self) -> str:
        return quantile_label(self.q)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, **_jsonable(asdict(self))}


@dataclass(frozen=True)
class SampleSummary:
    """Quantiles (with CIs) of one sample of round durations."""

    n: int
    mean: float
    quantiles: tuple[QuantileCI, ...]

    def get(self, q: float) -> QuantileCI:
        """The entry for quantile ``q`` (KeyError if it was not computed)."""
        for item in self.quantiles:
            if math.isclose(item.q, q):
                return item
        raise KeyError(quantile_label(q))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": _num(self.mean),
            "quantiles": [item.to_dict() for item in self.quantiles],
        }


@dataclass(frozen=True)
class SeedSummary:
    """Rounds pooled across seeds (as the seed study did) and one summary per seed.

    Pooling treats all rounds as independent; rounds of one seed share a run, so the pooled
    CI ignores between-seed variation. Compare ``per_seed`` to see how large that is.
    """

    pooled: SampleSummary
    per_seed: tuple[tuple[str, SampleSummary], ...]

    def seed(self, key: object) -> SampleSummary:
        """The summary of one seed, looked up by its key (compared as ``str``)."""
        for k, summary in self.per_seed:
            if k == str(key):
                return summary
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pooled": self.pooled.to_dict(),
            "per_seed": {k: s.to_dict() for k, s in self.per_seed},
        }


@dataclass(frozen=True)
class RatioCI:
    """q-quantile of a treatment sample divided by the same quantile of a baseline sample.

    CI from an independent two-sample bootstrap (each sample resampled on its own), or, from
    pytest_ztfl.paired, a two-level bootstrap over ``blocks`` with rounds ``paired``; ``mde``
    is then the smallest relative change the comparison detects with 80% power.
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
        return {"label": self.label, **_jsonable(asdict(self))}


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
        d = _jsonable(asdict(self))
        d["n"] = list(self.n)
        return {
            "label": self.label,
            **d,
            "ratio_of_ratios": _num(self.ratio_of_ratios),
            "consistent_with_zero": self.consistent_with_zero,
        }


@dataclass(frozen=True)
class TTAEstimate:
    """Mean time-to-accuracy over seeds/runs, some of which may be censored.

    ``estimate`` is the Kaplan-Meier restricted mean up to ``tau`` (the area under the KM
    survival curve on [0, tau]). If nothing is censored it equals the sample mean. If the
    largest time is censored (``restricted`` True) it is a lower bound for the true mean,
    which the data cannot identify. ``mean_reached`` is the plain mean over runs that reached
    the target: reported for comparison only, it is biased low when runs are censored.
    """

    estimate: float
    ci_low: float
    ci_high: float
    tau: float
    restricted: bool
    n: int
    n_censored: int
    mean_reached: float
    confidence: float
    method: str
    note: str = ""

    @property
    def n_reached(self) -> int:
        return self.n - self.n_censored

    def to_dict(self) -> dict[str, Any]:
        return {**_jsonable(asdict(self)), "n_reached": self.n_reached}


# ---------------------------------------------------------------------------------------
# quantiles


def quantile_cis(
    sample: npt.ArrayLike,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    method: BootstrapMethod = "percentile",
) -> SampleSummary:
    """Quantiles of ``sample`` with bootstrap CIs (one bootstrap for all quantiles)."""
    x = _as_sample(sample, "sample")
    qs = tuple(float(q) for q in quantiles)
    for q in qs:
        _check_q(q)
    _check_confidence(confidence)
    qarr = np.asarray(qs)

    def statistic(a: FloatArray, axis: int = -1) -> FloatArray:
        return np.asarray(np.quantile(a, qarr, axis=axis, method=_QUANTILE_METHOD))

    est = statistic(x)
    low, high, note = _bootstrap_ci(
        (x,),
        statistic,
        est,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )
    items = []
    for i, q in enumerate(qs):
        reliable, why = _quantile_reliability(q, (x.size,), confidence)
        items.append(
            QuantileCI(
                q=q,
                estimate=float(est[i]),
                ci_low=float(low[i]),
                ci_high=float(high[i]),
                n=int(x.size),
                confidence=confidence,
                method=method,
                reliable=reliable and not np.isnan(low[i]),
                note=_join(note, why),
            )
        )
    return SampleSummary(n=int(x.size), mean=float(np.mean(x)), quantiles=tuple(items))


def pool_seeds(samples: Mapping[Any, npt.ArrayLike] | Iterable[npt.ArrayLike]) -> FloatArray:
    """All rounds of all seeds in one flat array (the seed study's pooling)."""
    values = samples.values() if isinstance(samples, Mapping) else samples
    parts = [np.asarray(v, dtype=np.float64).ravel() for v in values]
    if not parts:
        raise ValueError("no seeds to pool")
    return np.concatenate(parts)


def summarize_seeds(
    samples: Mapping[Any, npt.ArrayLike],
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    method: BootstrapMethod = "percentile",
) -> SeedSummary:
    """Pooled and per-seed quantile summaries of ``{seed: round durations}``."""
    kw: dict[str, Any] = {
        "confidence": confidence,
        "n_resamples": n_resamples,
        "seed": seed,
        "method": method,
    }
    pooled = quantile_cis(pool_seeds(samples), quantiles, **kw)
    per_seed = tuple((str(k), quantile_cis(v, quantiles, **kw)) for k, v in samples.items())
    return SeedSummary(pooled=pooled, per_seed=per_seed)


# ---------------------------------------------------------------------------------------
# ratios and interaction


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
    t = _as_sample(treatment, "treatment", positive=True)
    b = _as_sample(baseline, "baseline", positive=True)
    qs = tuple(float(q) for q in quantiles)
    for q in qs:
        _check_q(q)
    _check_confidence(confidence)
    qarr = np.asarray(qs)

    def statistic(a: FloatArray, c: FloatArray, axis: int = -1) -> FloatArray:
        num = np.quantile(a, qarr, axis=axis, method=_QUANTILE_METHOD)
        den = np.quantile(c, qarr, axis=axis, method=_QUANTILE_METHOD)
        return np.asarray(num / den)

    est = statistic(t, b)
    low, high, note = _bootstrap_ci(
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
        reliable, why = _quantile_reliability(q, (t.size, b.size), confidence)
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
                note=_join(note, why),
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
        _as_sample(s, name, positive=positive)
        for s, name in zip((base, a_only, b_only, both), names, strict=True)
    )
    xs = (x00, x10, x01, x11)
    _check_q(q)
    _check_confidence(confidence)

    def statistic(
        s00: FloatArray, s10: FloatArray, s01: FloatArray, s11: FloatArray, axis: int = -1
    ) -> FloatArray:
        q00, q10, q01, q11 = (
            np.quantile(s, q, axis=axis, method=_QUANTILE_METHOD) for s in (s00, s10, s01, s11)
        )
        if scale == "log":
            return np.asarray(np.log(q11) - np.log(q10) - np.log(q01) + np.log(q00))
        return np.asarray(q11 - q10 - q01 + q00)

    est = statistic(x00, x10, x01, x11)
    low, high, note = _bootstrap_ci(
        xs,
        statistic,
        est,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )
    sizes = tuple(int(x.size) for x in xs)
    reliable, why = _quantile_reliability(q, sizes, confidence)
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
        note=_join(note, why),
    )


# ---------------------------------------------------------------------------------------
# time to accuracy


def tta_mean(
    times: npt.ArrayLike,
    reached: npt.ArrayLike,
    *,
    tau: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> TTAEstimate:
    """Mean time-to-accuracy over runs, right-censored where the target was not reached.

    ``times[i]`` is run i's time to the target if ``reached[i]``, else the time the run
    ended without reaching it (its censoring time). The estimate is the Kaplan-Meier
    restricted mean survival time (RMST) on [0, tau], with the KM curve from
    ``scipy.stats.ecdf`` on ``scipy.stats.CensoredData``; ``tau`` defaults to the largest
    observed time. The CI is estimate +- t(df) * se, with se from the Greenwood-type RMST
    variance (Klein & Moeschberger, eq. 4.5.2) times n/(n-1), and df = (runs that reached the
    target) - 1. With nothing censored this is exactly the Student-t interval of the mean.
    """
    _check_confidence(confidence)
    t = _as_sample(times, "times")
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    ev = np.asarray(reached, dtype=bool).ravel()
    if ev.shape != t.shape:
        raise ValueError(f"times has {t.size} values but reached has {ev.size}")
    n = int(t.size)
    n_events = int(ev.sum())
    n_censored = n - n_events
    mean_reached = float(np.mean(t[ev])) if n_events else math.nan
    method = "Kaplan-Meier restricted mean; Greenwood-type variance; Student t (reached - 1 df)"
    t_max = float(t.max())
    if tau is None:
        tau = t_max
    elif not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive finite number, not {tau}")

    def result(est: float, lo: float, hi: float, restricted: bool, note: str) -> TTAEstimate:
        return TTAEstimate(
            estimate=est,
            ci_low=lo,
            ci_high=hi,
            tau=float(tau),
            restricted=restricted,
            n=n,
            n_censored=n_censored,
            mean_reached=mean_reached,
            confidence=confidence,
            method=method,
            note=note,
        )

    if n_events == 0:
        return result(
            math.nan,
            math.nan,
            math.nan,
            True,
            f"target never reached in {n} run(s): the mean TTA is > {t_max:.6g} and not estimable",
        )

    km = sps.ecdf(sps.CensoredData(uncensored=t[ev], right=t[~ev])).sf
    # KM survival is a right-continuous step function: S = 1 before the first jump, then
    # km.probabilities[j] on [quantiles[j], quantiles[j+1]).
    knots = np.concatenate(([0.0], km.quantiles.astype(np.float64)))
    surv = np.concatenate(([1.0], km.probabilities.astype(np.float64)))

    def area(lo: float, hi: float) -> float:
        """Integral of the KM curve over [lo, hi] (constant beyond the last knot)."""
        if hi <= lo:
            return 0.0
        edges = np.clip(np.concatenate((knots, [math.inf])), lo, hi)
        return float(np.sum(surv * np.diff(edges)))

    rmst = area(0.0, tau)
    # The last observation censored (before tau) means S never reaches 0: the true mean is
    # beyond what the data show, so the RMST is only a lower bound.
    last_is_event = bool(ev[t == t_max].any())
    restricted = not (last_is_event and tau >= t_max)
    notes = []
    if restricted:
        notes.append(
            f"restricted mean up to tau={float(tau):.6g} (a lower bound for the mean TTA: "
            f"{n_censored} of {n} run(s) censored)"
            if n_censored
            else f"restricted mean up to tau={float(tau):.6g} < largest TTA"
        )
    if tau > t_max and not last_is_event:
        notes.append(f"KM curve extended flat from the last observation {t_max:.6g} to tau")

    event_times = np.unique(t[ev & (t <= tau)])
    var = 0.0
    for tj in event_times:
        at_risk = int(np.sum(t >= tj))
        d = int(np.sum(ev & (t == tj)))
        a = area(float(tj), tau)
        if a > 0.0:  # a == 0 also covers at_risk == d (the curve drops to 0 at tj)
            var += a * a * d / (at_risk * (at_risk - d))
    if n_events < 2:
        notes.append("fewer than 2 runs reached the target: no CI")
        return result(rmst, math.nan, math.nan, restricted, "; ".join(notes))
    se = math.sqrt(var * n / (n - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n_events - 1)) * se
    return result(rmst, rmst - half, rmst + half, restricted, "; ".join(notes))


# ---------------------------------------------------------------------------------------
# helpers


def _bootstrap_ci(
    samples: tuple[FloatArray, ...],
    statistic: Callable[..., FloatArray],
    estimate: FloatArray,
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
    method: BootstrapMethod,
) -> tuple[FloatArray, FloatArray, str]:
    """CI bounds (same shape as ``estimate``) and a note; never raises on degenerate data."""
    # below 1000 the bounds of a 95% CI rest on fewer than 25 replicates per tail
    note = f"only {n_resamples} bootstrap resamples" if n_resamples < 1000 else ""
    nan = np.full_like(estimate, np.nan, dtype=np.float64)
    if min(s.size for s in samples) < 2:
        return nan, nan.copy(), _join(note, "n=1: no sampling variability to resample, no CI")
    if all(np.ptp(s) == 0 for s in samples):
        # Every resample equals the estimate; scipy's BCa would return NaN with a warning.
        est = np.asarray(estimate, dtype=np.float64)
        return est, est.copy(), _join(note, "all values equal: zero-width CI")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sps.bootstrap(
            samples,
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            paired=False,
            axis=-1,
            confidence_level=confidence,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low = np.asarray(res.confidence_interval.low, dtype=np.float64)
    high = np.asarray(res.confidence_interval.high, dtype=np.float64)
    if np.isnan(low).any() or np.isnan(high).any():
        msgs = sorted({str(w.message).split(".")[0] for w in caught})
        note = _join(note, "bootstrap CI undefined: " + "; ".join(msgs) if msgs else "")
    return low, high, note


def _quantile_reliability(q: float, sizes: Sequence[int], confidence: float) -> tuple[bool, str]:
    need = min_n_for_quantile_ci(q, confidence)
    small = min(sizes)
    if small >= need:
        return True, ""
    return False, (
        f"CI unreliable: n={small} < {need} needed for a {confidence:.0%} CI of "
        f"{quantile_label(q)} (the bootstrap cannot reach beyond the sample extremes)"
    )


def _as_sample(values: npt.ArrayLike, name: str, *, positive: bool = False) -> FloatArray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if positive and np.any(x <= 0):
        raise ValueError(f"{name} must be > 0 (ratios and logs of durations)")
    return x


def _check_q(q: float) -> None:
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), not {q}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _num(v: float) -> float | None:
    """JSON has no NaN: undefined numbers become null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _num(v) if isinstance(v, float) else v for k, v in d.items()}
