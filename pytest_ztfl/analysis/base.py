"""The ground every estimator of pytest_ztfl.analysis stands on: the defaults, the checks of
its input, the one quantile definition, the smallest n for an honest quantile interval, and the
seeded one-level bootstrap (``scipy.stats.bootstrap``) that never raises on degenerate data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]
BootstrapMethod = Literal["percentile", "BCa", "basic"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)
DEFAULT_CONFIDENCE = 0.95
DEFAULT_N_RESAMPLES = 2000
# numpy's default (Hyndman-Fan type 7), the same as np.percentile/pandas; fixed so that
# estimates and bootstrap replicates use one definition.
QUANTILE_METHOD: Final = "linear"


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
    check_q(q)
    check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    return math.ceil(math.log(tail) / math.log(max(q, 1.0 - q)) - 1e-12)


def bootstrap_ci(
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
        return nan, nan.copy(), join_notes(note, "n=1: no sampling variability to resample, no CI")
    if all(np.ptp(s) == 0 for s in samples):
        # Every resample equals the estimate; scipy's BCa would return NaN with a warning.
        est = np.asarray(estimate, dtype=np.float64)
        return est, est.copy(), join_notes(note, "all values equal: zero-width CI")
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
        note = join_notes(note, "bootstrap CI undefined: " + "; ".join(msgs) if msgs else "")
    return low, high, note


def quantile_reliability(q: float, sizes: Sequence[int], confidence: float) -> tuple[bool, str]:
    need = min_n_for_quantile_ci(q, confidence)
    small = min(sizes)
    if small >= need:
        return True, ""
    return False, (
        f"CI unreliable: n={small} < {need} needed for a {confidence:.0%} CI of "
        f"{quantile_label(q)} (the bootstrap cannot reach beyond the sample extremes)"
    )


def as_sample(values: npt.ArrayLike, name: str, *, positive: bool = False) -> FloatArray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if positive and np.any(x <= 0):
        raise ValueError(f"{name} must be > 0 (ratios and logs of durations)")
    return x


def check_q(q: float) -> None:
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), not {q}")


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")


def join_notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def finite_or_none(v: float) -> float | None:
    """JSON has no NaN: undefined numbers become null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in d.items()}
