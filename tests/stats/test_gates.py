"""The SLO gate rule: PASS / INCONCLUSIVE / FAIL."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_ztfl.analysis.gates import (
    GateResult,
    Verdict,
    bonferroni_confidence,
    failure_rate_gate,
    overhead_gate,
    upper_limit_gate,
)
from pytest_ztfl.analysis.ratios import RatioCI, overhead_ratio

SEVERITY = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}


def gate(est: float, lo: float, hi: float, limit: float, **kw: object) -> GateResult:
    return upper_limit_gate("m", est, lo, hi, limit, n=(10,), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("est", "lo", "hi", "limit", "verdict"),
    [
        (1.0, 0.5, 1.5, 1.0, Verdict.PASS),  # estimate exactly at the limit
        (0.9, 0.5, 1.5, 1.0, Verdict.PASS),  # CI straddles, estimate below
        (1.2, 1.0, 1.5, 1.0, Verdict.INCONCLUSIVE),  # lower bound exactly at the limit
        (1.2, 0.9, 1.5, 1.0, Verdict.INCONCLUSIVE),
        (1.2, 1.0000001, 1.5, 1.0, Verdict.FAIL),
        (1.2, math.nan, math.nan, 1.0, Verdict.INCONCLUSIVE),  # no CI
        (math.nan, math.nan, math.nan, 1.0, Verdict.INCONCLUSIVE),
        (0.5, math.nan, math.nan, 1.0, Verdict.PASS),
    ],
)
def test_rule_boundaries(est: float, lo: float, hi: float, limit: float, verdict: Verdict) -> None:
    assert gate(est, lo, hi, limit).verdict is verdict


def test_unreliable_ci_cannot_fail() -> None:
    r = gate(2.0, 1.5, 2.5, 1.0, reliable=False, note="too few rounds")
    assert r.verdict is Verdict.INCONCLUSIVE
    assert "unreliable" in r.message and "too few rounds" in r.message
    assert gate(0.5, 0.4, 0.6, 1.0, reliable=False).verdict is Verdict.PASS


def test_message_names_metric_estimate_ci_limit_and_n() -> None:
    r = upper_limit_gate("p99 SEC3/SEC0", 1.42, 1.31, 1.55, 1.3, n=(50, 48), fmt="{:.2f}x".format)
    assert r.verdict is Verdict.FAIL and r.failed
    assert r.message == (
        "FAIL p99 SEC3/SEC0: 1.42x (95% CI [1.31x, 1.55x]) > limit 1.30x, n=50 vs 48"
    )
    assert "\n" not in r.message
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["verdict"] == "fail"


def test_failure_rate_cases() -> None:
    assert failure_rate_gate(0, 50).verdict is Verdict.PASS
    assert failure_rate_gate(1, 50).verdict is Verdict.PASS  # exactly 2%
    inconclusive = failure_rate_gate(1, 3)
    assert inconclusive.verdict is Verdict.INCONCLUSIVE
    assert "33.3%" in inconclusive.message and "n=3" in inconclusive.message
    assert failure_rate_gate(5, 20).verdict is Verdict.FAIL
    empty = failure_rate_gate(0, 0)
    assert empty.verdict is Verdict.INCONCLUSIVE and "no rounds" in empty.message
    json.dumps(empty.to_dict(), allow_nan=False)


def test_failure_rate_uses_clopper_pearson_bounds() -> None:
    # Independent check: the exact lower bound is Beta(alpha/2; k, n-k+1). Find the
    # smallest k that FAILs at n=100 and check k-1 does not.
    n, limit = 100, 0.02
    lower = [sps.beta.ppf(0.025, k, n - k + 1) if k else 0.0 for k in range(n + 1)]
    k_fail = next(k for k in range(n + 1) if lower[k] > limit)
    r = failure_rate_gate(k_fail, n, limit=limit)
    assert r.verdict is Verdict.FAIL
    assert r.ci_low == pytest.approx(lower[k_fail])
    assert failure_rate_gate(k_fail - 1, n, limit=limit).verdict is Verdict.INCONCLUSIVE
    assert k_fail == 6


def test_wilson_is_available_and_narrower_than_exact() -> None:
    exact = failure_rate_gate(3, 40)
    wilson = failure_rate_gate(3, 40, method="wilson")
    assert wilson.ci_high - wilson.ci_low < exact.ci_high - exact.ci_low
    assert "Wilson" in wilson.message


@pytest.mark.parametrize(
    ("k", "n", "limit"), [(-1, 5, 0.02), (6, 5, 0.02), (1, 5, 1.0), (1, 5, -0.1)]
)
def test_failure_rate_bad_input(k: int, n: int, limit: float) -> None:
    with pytest.raises(ValueError):
        failure_rate_gate(k, n, limit=limit)


def ratio(est: float, lo: float, hi: float, reliable: bool = True) -> RatioCI:
    return RatioCI(
        q=0.99,
        estimate=est,
        ci_low=lo,
        ci_high=hi,
        n_treatment=400,
        n_baseline=380,
        confidence=0.95,
        method="percentile",
        reliable=reliable,
    )


def test_overhead_gate() -> None:
    assert overhead_gate(ratio(1.2, 1.1, 1.3), 1.5).verdict is Verdict.PASS
    assert overhead_gate(ratio(1.6, 1.4, 1.8), 1.5).verdict is Verdict.INCONCLUSIVE
    fail = overhead_gate(ratio(1.9, 1.7, 2.1), 1.5)
    assert fail.verdict is Verdict.FAIL
    assert fail.message.startswith("FAIL p99 ratio vs baseline: 1.9x (95% CI [1.7x, 2.1x])")
    assert "n=400 vs 380" in fail.message
    assert overhead_gate(ratio(1.9, 1.7, 2.1, reliable=False), 1.5).verdict is (
        Verdict.INCONCLUSIVE
    )
    with pytest.raises(ValueError):
        overhead_gate(ratio(1.0, 1.0, 1.0), 0.0)


def test_overhead_gate_end_to_end_with_real_samples() -> None:
    rng = np.random.default_rng(0)
    sec0, sec3 = rng.lognormal(0, 0.3, 80), 2.0 * rng.lognormal(0, 0.3, 80)
    median = overhead_ratio(sec3, sec0, 0.5)
    assert overhead_gate(median, 1.5, metric="p50 SEC3/SEC0").verdict is Verdict.FAIL
    assert overhead_gate(median, 2.5).verdict is Verdict.PASS
    p99 = overhead_ratio(sec3, sec0, 0.99)  # 80 rounds: p99 CI unreliable, can't FAIL
    assert overhead_gate(p99, 1.2).verdict is Verdict.INCONCLUSIVE


def test_bonferroni() -> None:
    assert bonferroni_confidence(1) == pytest.approx(0.95)
    assert bonferroni_confidence(240) == pytest.approx(1 - 0.05 / 240)
    with pytest.raises(ValueError):
        bonferroni_confidence(0)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(finite, finite, finite, finite, finite, st.booleans())
def test_rule_properties(
    est: float, a: float, b: float, limit: float, limit2: float, reliable: bool
) -> None:
    lo, hi = min(a, b), max(a, b)
    r = upper_limit_gate("m", est, lo, hi, limit, n=(5,), reliable=reliable)
    if r.verdict is Verdict.FAIL:
        assert est > limit and lo > limit and reliable
    assert (r.verdict is Verdict.PASS) == (est <= limit)
    # monotone: a looser limit never gives a more severe verdict
    r2 = upper_limit_gate("m", est, lo, hi, max(limit, limit2), n=(5,), reliable=reliable)
    assert SEVERITY[r2.verdict] <= SEVERITY[r.verdict]
    # an unreliable CI never makes a verdict more severe
    r3 = upper_limit_gate("m", est, lo, hi, limit, n=(5,), reliable=False)
    assert SEVERITY[r3.verdict] <= SEVERITY[r.verdict]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.integers(min_value=1, max_value=500),
    st.data(),
    st.floats(min_value=0.0, max_value=0.5),
    st.floats(min_value=0.0, max_value=0.5),
)
def test_failure_rate_properties(n: int, data: st.DataObject, l1: float, l2: float) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    lo_limit, hi_limit = min(l1, l2), max(l1, l2)
    strict = failure_rate_gate(k, n, limit=lo_limit)
    loose = failure_rate_gate(k, n, limit=hi_limit)
    assert SEVERITY[loose.verdict] <= SEVERITY[strict.verdict]
    if strict.verdict is Verdict.FAIL:
        assert k / n > lo_limit
    # more failures in the same rounds never improve the verdict
    if k < n:
        worse = failure_rate_gate(k + 1, n, limit=lo_limit)
        assert SEVERITY[worse.verdict] >= SEVERITY[strict.verdict]


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=2, max_size=20),
    st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=2, max_size=20),
    st.floats(min_value=0.01, max_value=100.0),
    st.floats(min_value=0.5, max_value=3.0),
)
def test_overhead_verdict_invariant_to_units(
    t: list[float], b: list[float], c: float, limit: float
) -> None:
    r0 = overhead_gate(overhead_ratio(t, b, 0.5, n_resamples=1000), limit)
    r1 = overhead_gate(
        overhead_ratio(np.asarray(t) * c, np.asarray(b) * c, 0.5, n_resamples=1000), limit
    )
    assume(abs(r0.ci_low - limit) > 1e-6 and abs(r0.estimate - limit) > 1e-6)
    assert r0.verdict is r1.verdict
