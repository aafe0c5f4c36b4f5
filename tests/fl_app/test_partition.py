"""Properties of the client partitions (fl_app.partition) and of split parsing.

Partitions must cover every sample exactly once, be a pure function of (labels, clients, split,
seed), give every client its minimum, approach iid label proportions as the Dirichlet alpha
grows, and refuse impossible requests with a PartitionError that says why.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fl_testlib import PROPERTY
from hypothesis import assume, given
from hypothesis import strategies as st

from fl_app.partition import (
    MAX_DIRICHLET_ATTEMPTS,
    PartitionError,
    SplitSpec,
    parse_split,
    partition,
    summary,
)

SPLITS = st.one_of(
    st.just(SplitSpec("iid")),
    st.floats(min_value=0.3, max_value=1e4).map(lambda a: SplitSpec("dirichlet", a)),
)


@st.composite
def labelled(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    """(labels, clients, min_samples) with enough samples for the minimum to be reachable."""
    clients = draw(st.integers(1, 8))
    min_samples = draw(st.integers(1, 5))
    n = draw(st.integers(clients * 20, 800))
    num_classes = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    labels = np.random.default_rng(seed).integers(0, num_classes, n)
    return labels, clients, min_samples


def proportions(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_classes) / len(labels)


@PROPERTY
@given(labelled(), SPLITS, st.integers(0, 2**63 - 1))
def test_every_index_exactly_once_and_every_client_its_minimum(
    data: tuple[np.ndarray, int, int], split: SplitSpec, seed: int
) -> None:
    labels, clients, min_samples = data
    parts = partition(labels, clients, split, seed, min_samples)
    assert len(parts) == clients
    together = np.concatenate(parts)
    assert len(together) == len(labels), "some index is missing or repeated"
    np.testing.assert_array_equal(np.sort(together), np.arange(len(labels)))
    assert min(len(p) for p in parts) >= min_samples
    for p in parts:
        assert p.dtype.kind == "i"
        assert np.all(np.diff(p) > 0), "each client's indices are sorted and unique"


@PROPERTY
@given(labelled(), SPLITS, st.integers(0, 2**63 - 1))
def test_same_seed_same_partition(
    data: tuple[np.ndarray, int, int], split: SplitSpec, seed: int
) -> None:
    labels, clients, min_samples = data
    a = partition(labels, clients, split, seed, min_samples)
    b = partition(labels.copy(), clients, split, seed, min_samples)
    assert len(a) == len(b)
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("split", ["iid", "dirichlet-0.5"])
def test_different_seeds_give_different_partitions(split: str) -> None:
    labels = np.random.default_rng(1).integers(0, 10, 2000)
    a = partition(labels, 5, parse_split(split), seed=0)
    b = partition(labels, 5, parse_split(split), seed=1)
    assert any(not np.array_equal(pa, pb) for pa, pb in zip(a, b, strict=True))


# With alpha = 1e4 the per-client class shares have a relative spread of about
# sqrt(clients / (alpha * clients)) ~ 1 %, so per-client label proportions stay within 0.02
# (absolute) of the global ones even at 10 clients over 800 samples each (>4 sigma), and client
# sizes within 10 % of n / clients. A skewed split (alpha = 0.1) misses that bound by far, which
# shows the measure can tell the two apart.
LARGE_ALPHA_TOLERANCE = 0.02


def max_label_deviation(parts: list[np.ndarray], labels: np.ndarray) -> float:
    k = int(labels.max()) + 1
    glob = proportions(labels, k)
    return max(float(np.abs(proportions(labels[p], k) - glob).max()) for p in parts)


@PROPERTY
@given(
    st.integers(2, 10),
    st.integers(0, 2**32 - 1),
    st.lists(st.floats(0.5, 2.0), min_size=10, max_size=10),
)
def test_dirichlet_with_large_alpha_approaches_iid_label_proportions(
    clients: int, seed: int, class_weights: list[float]
) -> None:
    rng = np.random.default_rng(seed)
    p = np.array(class_weights) / sum(class_weights)
    labels = rng.choice(10, size=8000, p=p)  # the size of the offline training split
    parts = partition(labels, clients, parse_split("dirichlet-1e4"), seed, min_samples=10)
    assert max_label_deviation(parts, labels) <= LARGE_ALPHA_TOLERANCE
    sizes = np.array([len(q) for q in parts])
    assert np.all(np.abs(sizes - 8000 / clients) <= 0.1 * 8000 / clients)


def test_small_alpha_is_visibly_skewed() -> None:
    labels = np.random.default_rng(0).integers(0, 10, 8000)
    skewed = partition(labels, 5, parse_split("dirichlet-0.1"), seed=0)
    iid = partition(labels, 5, parse_split("iid"), seed=0)
    assert max_label_deviation(skewed, labels) > 5 * LARGE_ALPHA_TOLERANCE
    assert max_label_deviation(iid, labels) <= LARGE_ALPHA_TOLERANCE


@PROPERTY
@given(st.integers(1, 20), st.integers(1, 50), st.data())
def test_more_than_the_samples_hold_is_refused(
    clients: int, min_samples: int, data: st.DataObject
) -> None:
    n = data.draw(st.integers(0, clients * min_samples - 1))
    labels = np.zeros(n, dtype=np.int64)
    for split in ("iid", "dirichlet-1"):
        with pytest.raises(PartitionError, match=r"exceeds the \d+ samples"):
            partition(labels, clients, parse_split(split), 0, min_samples)


@pytest.mark.parametrize("clients", [0, -3])
def test_no_clients_is_refused(clients: int) -> None:
    with pytest.raises(PartitionError, match=r"clients -?\d+: must be >= 1"):
        partition(np.zeros(10, dtype=np.int64), clients, parse_split("iid"), 0, 1)


def test_unreachable_dirichlet_minimum_is_refused_after_bounded_attempts() -> None:
    # One class, 10 clients, alpha tiny: nearly all samples go to one client in every draw,
    # so no draw gives all ten clients the 10 samples each they need.
    labels = np.zeros(100, dtype=np.int64)
    with pytest.raises(PartitionError) as info:
        partition(labels, 10, parse_split("dirichlet-0.001"), 0, min_samples=10)
    msg = str(info.value)
    assert f"no partition in {MAX_DIRICHLET_ATTEMPTS} draws" in msg
    assert "raise alpha or lower min_samples" in msg


def test_summary_counts_samples_and_labels() -> None:
    labels = np.array([0, 1, 1, 2, 2, 2])
    parts = [np.array([0, 3]), np.array([1, 2, 4, 5])]
    assert summary(parts, labels) == [
        {"client": 0, "samples": 2, "labels": [1, 0, 1]},
        {"client": 1, "samples": 4, "labels": [0, 2, 2]},
    ]


# ---- parse_split ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "alpha"),
    [("dirichlet-0.5", 0.5), ("dirichlet-1e4", 1e4), ("dirichlet-.25", 0.25), ("dirichlet-3", 3)],
)
def test_parse_split_accepts_dirichlet(text: str, alpha: float) -> None:
    spec = parse_split(text)
    assert spec == SplitSpec("dirichlet", alpha)
    assert spec.label == "noniid"


def test_parse_split_accepts_iid() -> None:
    spec = parse_split("iid")
    assert spec.kind == "iid" and spec.label == "iid" and str(spec) == "iid"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("dirichlet-0", "alpha must be a finite number > 0"),
        ("dirichlet-0.0", "alpha must be a finite number > 0"),
        ("dirichlet-1e-400", "alpha must be a finite number > 0"),  # underflows to 0
        ("dirichlet-1e400", "alpha must be a finite number > 0"),  # overflows to inf
        ("dirichlet--1", "expected 'iid' or 'dirichlet-<alpha>'"),
        ("dirichlet-", "expected 'iid' or 'dirichlet-<alpha>'"),
        ("dirichlet-abc", "expected 'iid' or 'dirichlet-<alpha>'"),
        ("dirichlet-inf", "expected 'iid' or 'dirichlet-<alpha>'"),
        ("dirichlet-nan", "expected 'iid' or 'dirichlet-<alpha>'"),
        ("IID", "expected 'iid' or 'dirichlet-<alpha>'"),
        ("", "expected 'iid' or 'dirichlet-<alpha>'"),
        (" iid", "expected 'iid' or 'dirichlet-<alpha>'"),
    ],
)
def test_parse_split_refuses(text: str, why: str) -> None:
    with pytest.raises(PartitionError) as info:
        parse_split(text)
    assert why in str(info.value)
    assert repr(text) in str(info.value), "the message quotes the offending value"


@PROPERTY
@given(st.text(max_size=30))
def test_parse_split_either_parses_or_raises_partition_error(text: str) -> None:
    try:
        spec = parse_split(text)
    except PartitionError as exc:
        assert repr(text) in str(exc)
        return
    assert spec.kind in ("iid", "dirichlet")
    assert spec.kind == "iid" or (spec.alpha > 0 and math.isfinite(spec.alpha))


@PROPERTY
@given(st.floats(min_value=1e-6, max_value=1e6))
def test_split_name_round_trips(alpha: float) -> None:
    spec = SplitSpec("dirichlet", alpha)
    again = parse_split(str(spec))
    assume(again.alpha > 0)
    assert again.kind == "dirichlet"
    assert again.alpha == pytest.approx(alpha, rel=1e-5)  # str() keeps 6 significant digits
