"""Properties of sample-weighted FedAvg (fl_app.fedavg) against a float64 numpy reference."""

from __future__ import annotations

import random

import numpy as np
import pytest
from fl_testlib import PROPERTY
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fl_app.fedavg import fedavg
from fl_app.tensors import NDArrays

FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)

SHAPES = st.lists(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), min_size=1, max_size=4)
VALUES = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
COUNTS = st.integers(1, 100_000)


@st.composite
def updates(draw: st.DrawFn) -> list[tuple[NDArrays, int]]:
    """2-6 clients' weights over one random layout, each with a positive sample count."""
    shapes = draw(SHAPES)
    clients = draw(st.integers(1, 6))
    out = []
    for _ in range(clients):
        weights = {
            f"layer{i}.weight": draw(hnp.arrays(np.float32, shape, elements=VALUES))
            for i, shape in enumerate(shapes)
        }
        out.append((weights, draw(COUNTS)))
    return out


def reference(ups: list[tuple[NDArrays, int]]) -> NDArrays:
    """sum(n_i * w_i) / sum(n_i), all in float64."""
    total = sum(n for _, n in ups)
    return {
        k: sum(w[k].astype(np.float64) * n for w, n in ups) / total  # type: ignore[misc]
        for k in ups[0][0]
    }


@PROPERTY
@given(updates(), st.lists(COUNTS, min_size=1, max_size=6))
def test_fedavg_of_identical_models_is_that_model(
    ups: list[tuple[NDArrays, int]], counts: list[int]
) -> None:
    weights = ups[0][0]
    out = fedavg([(weights, n) for n in counts])
    assert list(out) == list(weights)
    for k, v in weights.items():
        assert out[k].dtype == np.float32
        np.testing.assert_array_equal(out[k], v)  # exact: float64 error << half a float32 ulp


@PROPERTY
@given(updates())
def test_weighted_average_matches_float64_reference(ups: list[tuple[NDArrays, int]]) -> None:
    out = fedavg(ups)
    ref = reference(ups)
    assert list(out) == list(ref)
    for k, r in ref.items():
        assert out[k].dtype == np.float32 and out[k].shape == r.shape
        # One float32 rounding of the float64 result, plus float64 noise relative to the inputs'
        # magnitude (cancellation can make the result much smaller than the inputs).
        scale = max(float(np.abs(w[k]).max()) for w, _ in ups)
        # float32 subnormals have absolute, not relative, precision: allow one of those too.
        bound = FLOAT32_EPS * np.abs(r) + 1e-12 * scale + FLOAT32_TINY
        assert np.all(np.abs(out[k].astype(np.float64) - r) <= bound)


@PROPERTY
@given(updates(), st.randoms(use_true_random=False))
def test_client_order_does_not_matter(ups: list[tuple[NDArrays, int]], rnd: random.Random) -> None:
    shuffled = list(ups)
    rnd.shuffle(shuffled)
    a, b = fedavg(ups), fedavg(shuffled)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=2 * FLOAT32_EPS, atol=1e-30)


def test_weights_are_proportional_to_sample_counts() -> None:
    a = {"w": np.zeros(3, np.float32)}
    b = {"w": np.full(3, 4.0, np.float32)}
    out = fedavg([(a, 300), (b, 100)])
    np.testing.assert_array_equal(out["w"], np.full(3, 1.0, np.float32))


def test_no_updates_is_an_error() -> None:
    with pytest.raises(ValueError, match="no updates"):
        fedavg([])


@pytest.mark.parametrize("bad", [0, -5])
def test_non_positive_sample_count_is_an_error(bad: int) -> None:
    w = {"w": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match="positive sample count"):
        fedavg([(w, 10), (w, bad)])
