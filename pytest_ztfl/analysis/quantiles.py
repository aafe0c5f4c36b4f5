"""Quantiles of one sample of round durations, and of seeds pooled (as the seed study did),
each with its bootstrap confidence interval."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_ztfl.analysis.base import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    DEFAULT_QUANTILES,
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
        return {"label": self.label, **jsonable(asdict(self))}


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
            "mean": finite_or_none(self.mean),
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
    x = as_sample(sample, "sample")
    qs = tuple(float(q) for q in quantiles)
    for q in qs:
        check_q(q)
    check_confidence(confidence)
    qarr = np.asarray(qs)

    def statistic(a: FloatArray, axis: int = -1) -> FloatArray:
        return np.asarray(np.quantile(a, qarr, axis=axis, method=QUANTILE_METHOD))

    est = statistic(x)
    low, high, note = bootstrap_ci(
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
        reliable, why = quantile_reliability(q, (x.size,), confidence)
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
                note=join_notes(note, why),
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
