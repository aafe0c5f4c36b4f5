"""Small, dependency-free statistics for calibration: percentiles and binomial intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sample."""
    if not xs:
        raise ValueError("percentile of an empty sample")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n-1)."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def binom_interval(n: int, p: float, level: float = 0.95) -> tuple[int, int]:
    """Central ``level`` interval [lo, hi] of the count of a Binomial(n, p): the outcomes a
    correct emulator produces with probability >= ``level`` (each tail <= (1-level)/2)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError("need n >= 0 and 0 <= p <= 1")
    if p == 0.0 or n == 0:
        return 0, 0
    if p == 1.0:
        return n, n
    tail = (1.0 - level) / 2.0
    lp, lq = math.log(p), math.log1p(-p)
    pmf = [math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * lp + (n - k) * lq) for k in range(n + 1)]
    cdf, lo = 0.0, 0
    for k, v in enumerate(pmf):
        if cdf + v > tail:
            lo = k
            break
        cdf += v
    sf, hi = 0.0, n
    for k in range(n, -1, -1):
        if sf + pmf[k] > tail:
            hi = k
            break
        sf += pmf[k]
    return lo, hi
