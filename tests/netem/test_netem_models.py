"""The delay line's random models, checked statistically without a kernel."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sps

from k8s_fixtures.netem.models import ClassSpec, DelaySampler, LossProcess, class_rngs
from k8s_fixtures.netem.stats import binom_interval, percentile, std

N = 40_000


@pytest.mark.parametrize(("dist", "jitter", "want_std"), [
    ("normal", 4.0, 4.0), ("uniform", 6.0, 6.0 / math.sqrt(3)), ("paretonormal", 4.0, 4.0)])
def test_delay_sampler_mean_and_std(dist: str, jitter: float, want_std: float) -> None:
    s = DelaySampler(ClassSpec(delay_ms=50, jitter_ms=jitter, jitter_dist=dist),
                     random.Random(1))
    xs = [s.sample() * 1e3 for _ in range(N)]
    assert sum(xs) / N == pytest.approx(50, abs=0.1)
    assert std(xs) == pytest.approx(want_std, rel=0.05)
    if dist == "uniform":
        assert min(xs) >= 44 and max(xs) <= 56
    if dist == "normal":
        assert sps.kstest(xs, "norm", args=(50, 4)).pvalue > 1e-3
    if dist == "paretonormal":  # heavier right tail than the normal of the same std
        assert percentile(xs, 99.9) - 50 > 50 - percentile(xs, 0.1)


def test_delay_is_never_negative() -> None:
    s = DelaySampler(ClassSpec(delay_ms=1, jitter_ms=1), random.Random(2))
    assert min(s.sample() for _ in range(N)) >= 0.0


@pytest.mark.parametrize("seed", range(5))
def test_bernoulli_loss_rate_within_binomial_interval(seed: int) -> None:
    lp = LossProcess(ClassSpec(loss_pct=2.0), class_rngs(seed, 7)[1])
    lost = sum(lp.lost() for _ in range(N))
    lo, hi = binom_interval(N, 0.02, level=0.999)
    assert lo <= lost <= hi


def test_gilbert_loss_rate_and_burst_length() -> None:
    lp = LossProcess(ClassSpec(loss_pct=2.0, loss_model="gilbert", loss_burst=4.0),
                     random.Random(3))
    seq = [lp.lost() for _ in range(200_000)]
    rate = sum(seq) / len(seq)
    bursts, run = [], 0
    for x in seq:
        if x:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert rate == pytest.approx(0.02, rel=0.15)
    assert sum(bursts) / len(bursts) == pytest.approx(4.0, rel=0.15)


def test_loss_draws_do_not_depend_on_delay_draws() -> None:
    a = class_rngs(0, 100)
    b = class_rngs(0, 100)
    for _ in range(100):
        a[0].random()  # consume delay samples on one side only
    assert [a[1].random() for _ in range(10)] == [b[1].random() for _ in range(10)]


@pytest.mark.parametrize(("n", "p"), [(3000, 0.01), (200, 0.5), (5000, 0.001), (10, 0.3)])
def test_binomial_interval_matches_scipy(n: int, p: float) -> None:
    lo, hi = binom_interval(n, p)
    d = sps.binom(n, p)
    assert d.cdf(lo - 1) <= 0.025 < d.cdf(lo)
    assert d.sf(hi) <= 0.025 < d.sf(hi - 1)
    assert binom_interval(100, 0.0) == (0, 0)
