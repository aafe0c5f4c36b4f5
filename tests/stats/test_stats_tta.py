"""Time-to-accuracy means with right censoring (Kaplan-Meier restricted mean)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_ztfl.analysis.tta import tta_mean


def test_none_censored_is_the_plain_mean_with_a_t_interval() -> None:
    times = [310.0, 280.0, 402.5, 350.0, 298.0]
    r = tta_mean(times, [True] * 5)
    assert r.estimate == pytest.approx(np.mean(times))
    assert r.mean_reached == pytest.approx(np.mean(times))
    ci = sps.ttest_1samp(times, 0.0).confidence_interval(0.95)
    assert r.ci_low == pytest.approx(ci.low)
    assert r.ci_high == pytest.approx(ci.high)
    assert not r.restricted and r.n_censored == 0 and r.n_reached == 5
    assert r.note == ""


def test_all_censored_is_not_estimable() -> None:
    r = tta_mean([500.0, 520.0, 510.0], [False, False, False])
    assert math.isnan(r.estimate) and math.isnan(r.ci_low) and math.isnan(r.ci_high)
    assert r.n_censored == 3 and r.restricted
    assert "never reached" in r.note and "520" in r.note
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["estimate"] is None


def test_mixed_last_censored_matches_hand_km() -> None:
    # KM: S=1 on [0,1), 3/4 on [1,3), 3/8 on [3,4]; area to tau=4: 1 + 1.5 + 0.375
    r = tta_mean([1.0, 2.0, 3.0, 4.0], [True, False, True, False])
    assert r.estimate == pytest.approx(2.875)
    assert r.restricted and r.tau == 4.0 and r.n_censored == 2
    assert r.mean_reached == pytest.approx(2.0)
    assert "lower bound" in r.note


def test_mixed_last_event_matches_hand_km_and_variance() -> None:
    # KM: 1 on [0,2), 0.8 on [2,5), 0.8*2/3 on [5,8), 0 from 8. Mean = 2 + 2.4 + 1.6 = 6.
    # Greenwood-type variance: A(2)=4, A(5)=1.6, A(8)=0:
    #   16*1/(5*4) + 2.56*1/(3*2) = 0.8 + 0.426667; times n/(n-1) = 5/4; t with 3-1 df.
    r = tta_mean([2.0, 3.0, 5.0, 7.0, 8.0], [True, False, True, False, True])
    assert r.estimate == pytest.approx(6.0)
    assert not r.restricted
    se = math.sqrt((0.8 + 2.56 / 6) * 5 / 4)
    half = sps.t.ppf(0.975, 2) * se
    assert r.ci_low == pytest.approx(6.0 - half)
    assert r.ci_high == pytest.approx(6.0 + half)


def test_explicit_tau_restricts_the_mean() -> None:
    r = tta_mean([2.0, 3.0, 5.0, 7.0, 8.0], [True, False, True, False, True], tau=4.0)
    assert r.estimate == pytest.approx(2.0 + 0.8 * 2.0)
    assert r.restricted and r.tau == 4.0


def test_tied_event_and_censoring_counts_the_event_first() -> None:
    # At t=3: 4 at risk, 2 events -> S=0.5; the censored 3 leaves; at 5: 1 at risk -> 0.
    r = tta_mean([3.0, 3.0, 3.0, 5.0], [True, True, False, True])
    assert r.estimate == pytest.approx(3.0 + 0.5 * 2.0)
    assert not r.restricted


def test_single_reached_run_has_no_ci() -> None:
    r = tta_mean([100.0, 200.0], [True, False])
    assert r.estimate == pytest.approx(100.0 + 0.5 * 100.0)
    assert math.isnan(r.ci_low) and "fewer than 2" in r.note


def test_input_checks() -> None:
    with pytest.raises(ValueError):
        tta_mean([1.0, 2.0], [True])
    with pytest.raises(ValueError):
        tta_mean([-1.0, 2.0], [True, True])
    with pytest.raises(ValueError):
        tta_mean([], [])
    with pytest.raises(ValueError):
        tta_mean([1.0, 2.0], [True, True], tau=0.0)


runs = st.lists(
    st.tuples(st.floats(min_value=1.0, max_value=1000.0), st.booleans()),
    min_size=2,
    max_size=12,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(runs)
def test_censoring_a_run_never_lowers_the_estimate(data: list[tuple[float, bool]]) -> None:
    times = [t for t, _ in data]
    reached = [e for _, e in data]
    if not any(reached):
        return
    tau = max(times)
    before = tta_mean(times, reached, tau=tau)
    i = reached.index(True)
    if sum(reached) == 1:
        return
    after = tta_mean(times, [e and j != i for j, e in enumerate(reached)], tau=tau)
    assert after.estimate >= before.estimate - 1e-9
    # the KM restricted mean lies between the smallest time and tau
    assert min(times) - 1e-9 <= before.estimate <= tau + 1e-9


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.floats(min_value=1.0, max_value=1000.0), min_size=2, max_size=12))
def test_uncensored_estimate_is_the_mean(times: list[float]) -> None:
    r = tta_mean(times, [True] * len(times))
    assert r.estimate == pytest.approx(np.mean(times), rel=1e-9)
    assert r.ci_low <= r.estimate <= r.ci_high
