"""Overhead ratios and the 2x2 interaction contrast."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_ztfl.analysis.ratios import interaction_contrast, overhead_ratio, overhead_ratios


def lognormal(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).lognormal(0.0, 0.5, n)


def test_known_median_ratio_is_covered() -> None:
    # 150 seeded trials, true ratio 1.5, n=100 per sample; tolerance [0.88, 0.995].
    hits = 0
    estimates = []
    for i in range(150):
        r = overhead_ratio(
            lognormal(2 * i, 100, 1.5), lognormal(2 * i + 1, 100), 0.5, n_resamples=1000, seed=i
        )
        hits += r.ci_low <= 1.5 <= r.ci_high
        estimates.append(r.estimate)
    assert 0.88 <= hits / 150 <= 0.995
    assert np.median(estimates) == pytest.approx(1.5, rel=0.05)


def test_large_effect_excludes_one() -> None:
    med, p99 = overhead_ratios(lognormal(1, 50, 2.0), lognormal(2, 50))
    assert med.ci_low > 1.0 and med.excludes_one
    assert med.estimate == pytest.approx(
        np.median(lognormal(1, 50, 2.0)) / np.median(lognormal(2, 50))
    )
    assert p99.q == 0.99 and not p99.reliable  # 50 rounds cannot support a p99 CI
    assert p99.estimate == pytest.approx(
        np.quantile(lognormal(1, 50, 2.0), 0.99) / np.quantile(lognormal(2, 50), 0.99)
    )


def test_ratio_ci_is_scipys_independent_two_sample_percentile_bootstrap() -> None:
    # Pins the documented method: unpaired resampling, percentile interval, seeded rng.
    t, b = lognormal(8, 40, 1.3), lognormal(9, 40)
    r = overhead_ratio(t, b, 0.5, n_resamples=1000, seed=3)
    ref = sps.bootstrap(
        (t, b),
        lambda x, y, axis: np.quantile(x, 0.5, axis=axis) / np.quantile(y, 0.5, axis=axis),
        n_resamples=1000,
        paired=False,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert (r.ci_low, r.ci_high) == pytest.approx((ref.low, ref.high))


def test_no_effect_includes_one() -> None:
    # Same distribution: the CI should contain 1 in ~95% of cases; seeded, 60 trials.
    results = [
        overhead_ratio(lognormal(100 + i, 60), lognormal(200 + i, 60), n_resamples=1000, seed=i)
        for i in range(60)
    ]
    included = sum(r.ci_low <= 1.0 <= r.ci_high for r in results)
    assert included >= 54  # >= 90%
    assert not any(r.ci_low > 1.2 or r.ci_high < 1 / 1.2 for r in results)


def test_ratio_rejects_non_positive_values() -> None:
    with pytest.raises(ValueError):
        overhead_ratio([1.0, 0.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        overhead_ratio([1.0, 2.0], [-1.0, 2.0])


def test_ratio_degenerate_samples() -> None:
    r = overhead_ratio([2.0, 2.0, 2.0], [1.0, 1.0])
    assert r.estimate == r.ci_low == r.ci_high == 2.0
    r = overhead_ratio([2.0], [1.0, 1.5])
    assert r.estimate == pytest.approx(2.0 / 1.25)
    assert math.isnan(r.ci_low) and not r.reliable
    json.dumps(r.to_dict(), allow_nan=False)


samples = st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=2, max_size=30)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(samples, samples, st.floats(min_value=0.01, max_value=100.0))
def test_scaling_both_samples_leaves_the_ratio_unchanged(
    t: list[float], b: list[float], c: float
) -> None:
    base = overhead_ratios(t, b, n_resamples=1000)
    scaled = overhead_ratios(np.asarray(t) * c, np.asarray(b) * c, n_resamples=1000)
    for r0, r1 in zip(base, scaled, strict=True):
        assert r1.estimate == pytest.approx(r0.estimate, rel=1e-9)
        assert r1.ci_low == pytest.approx(r0.ci_low, rel=1e-9)
        assert r1.ci_high == pytest.approx(r0.ci_high, rel=1e-9)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(samples, samples, st.floats(min_value=0.1, max_value=10.0))
def test_scaling_the_treatment_scales_the_ratio(t: list[float], b: list[float], c: float) -> None:
    r0 = overhead_ratio(t, b, n_resamples=1000)
    r1 = overhead_ratio(np.asarray(t) * c, b, n_resamples=1000)
    assert r1.estimate == pytest.approx(c * r0.estimate, rel=1e-9)
    assert r1.ci_low == pytest.approx(c * r0.ci_low, rel=1e-9)
    assert r1.ci_high == pytest.approx(c * r0.ci_high, rel=1e-9)


def test_interaction_hand_computed_on_constant_cells() -> None:
    base, a, b, both = [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [5.0, 5.0]
    log = interaction_contrast(base, a, b, both)
    assert log.estimate == pytest.approx(math.log(5 / 6))
    assert log.ratio_of_ratios == pytest.approx(5 / 6)
    assert log.ci_low == log.ci_high == log.estimate
    absolute = interaction_contrast(base, a, b, both, scale="abs")
    assert absolute.estimate == pytest.approx(5 - 2 - 3 + 1)
    assert math.isnan(absolute.ratio_of_ratios)
    assert absolute.consistent_with_zero is False


def test_interaction_hand_computed_medians() -> None:
    base, a, b, both = [1.0, 2.0, 3.0], [2.0, 4.0], [1.0, 5.0, 9.0], [10.0, 20.0, 30.0, 40.0]
    r = interaction_contrast(base, a, b, both, scale="abs")
    assert r.estimate == pytest.approx(25.0 - 3.0 - 5.0 + 2.0)
    assert r.n == (3, 2, 3, 4)
    r = interaction_contrast(base, a, b, both, scale="log")
    assert r.estimate == pytest.approx(math.log(25 * 2 / (3 * 5)))


def test_multiplicative_effects_are_additive_on_log_scale_only() -> None:
    # SEC x1.5, NET x2, no interaction on the log scale: both = x3.
    base, sec, net, both = (
        lognormal(s, 200, k) for s, k in ((1, 1.0), (2, 1.5), (3, 2.0), (4, 3.0))
    )
    log = interaction_contrast(base, sec, net, both, n_resamples=1000)
    assert log.consistent_with_zero and log.reliable
    assert log.ratio_of_ratios == pytest.approx(1.0, abs=0.2)
    # in seconds the same effects interact: SEC's extra cost doubles under NET
    absolute = interaction_contrast(base, sec, net, both, scale="abs", n_resamples=1000)
    assert absolute.ci_low > 0


def test_shift_effects_are_additive_on_absolute_scale() -> None:
    # SEC +0.5 s, NET +3 s, both +3.5 s: no interaction in seconds. The CI should contain 0
    # in ~95% of cases; 40 seeded trials, require >= 90%.
    hits = 0
    for i in range(40):
        base, sec, net, both = (
            lognormal(1000 * k + i, 200) + shift
            for k, shift in ((1, 0.0), (2, 0.5), (3, 3.0), (4, 3.5))
        )
        r = interaction_contrast(base, sec, net, both, scale="abs", n_resamples=1000, seed=i)
        hits += bool(r.consistent_with_zero)
    assert hits >= 36


def test_interaction_detected_when_present() -> None:
    base, sec, net, both = (
        lognormal(s, 100, k) for s, k in ((1, 1.0), (2, 1.5), (3, 2.0), (4, 6.0))
    )
    r = interaction_contrast(base, sec, net, both, n_resamples=1000)
    assert r.ci_low > 0 and r.consistent_with_zero is False
    assert r.ratio_of_ratios == pytest.approx(2.0, rel=0.25)
    json.dumps(r.to_dict(), allow_nan=False)


def test_interaction_input_checks() -> None:
    with pytest.raises(ValueError):
        interaction_contrast([1.0], [1.0], [1.0], [0.0])
    with pytest.raises(ValueError):
        interaction_contrast([1.0], [1.0], [1.0], [1.0], scale="sqrt")  # type: ignore[arg-type]
    r = interaction_contrast([1.0], [1.0], [1.0], [0.0], scale="abs")
    assert r.estimate == -1.0 and math.isnan(r.ci_low) and r.consistent_with_zero is None
