"""Comparisons of two arms measured in blocks: the ratio (or difference) of a quantile, with
an interval that resamples every level that varies.

A block is one block run of pytest_ztfl.design: the arms ran together, their rounds matched by
round number (``paired``), or, when an arm's partner ran in another block run (a resumed
matrix), not matched (resampled on their own). The interval is a two-level percentile bootstrap
(Kalibera & Jones, "Rigorous Benchmarking in Reasonable Time", ISMM 2013; Davison & Hinkley's
case resampling at both stages): draw blocks with replacement, then within each drawn block
draw round indices with replacement, the same indices for both arms when paired, so a
disturbance both arms met moves both quantiles together and cancels in the ratio. Between-block
variation (seeds, data splits, the machine's drift from one block to the next) and round-to-round
variation both enter; with one block only the latter can (the note says so).

``scipy.stats.bootstrap`` resamples one level only (its ``paired=True`` pairs observations, it
cannot draw clusters), hence this module. Each result also gives the minimum detectable effect
(MDE) of the comparison: the smallest true change it would find with 80% power at its
confidence level, from the bootstrap's standard error of the log ratio. Pure numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from pytest_ztfl.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    RatioCI,
    min_n_for_quantile_ci,
    quantile_label,
)

FloatArray = npt.NDArray[np.float64]
POWER = 0.8  # of the minimum detectable effect
_CHUNK = 500  # resamples per vectorised batch (bounds memory: chunk x blocks x rounds)


@dataclass(frozen=True)
class BlockSample:
    """One block's rounds of the treatment and baseline arms."""

    treat: FloatArray
    base: FloatArray
    paired: bool  # rounds matched by position (same block run, same round numbers)
    label: str = ""


def match_rounds(
    treat: Mapping[int, float], base: Mapping[int, float], label: str = ""
) -> BlockSample:
    """A paired block from ``{round number: value}`` of each arm (rounds both arms have)."""
    common = sorted(set(treat) & set(base))
    return BlockSample(
        np.asarray([treat[r] for r in common], dtype=np.float64),
        np.asarray([base[r] for r in common], dtype=np.float64),
        True,
        label,
    )


def unmatched(treat: Sequence[float], base: Sequence[float], label: str = "") -> BlockSample:
    """A block whose arms ran apart (another block run): no pairing of rounds."""
    return BlockSample(
        np.asarray(treat, dtype=np.float64), np.asarray(base, dtype=np.float64), False, label
    )


@dataclass(frozen=True)
class DiffCI:
    """q-quantile of the treatment minus that of the baseline (seconds), pooled over blocks."""

    q: float
    estimate: float
    ci_low: float
    ci_high: float
    n_treatment: int
    n_baseline: int
    blocks: int
    paired: bool
    confidence: float
    mde: float  # in the unit of the values
    reliable: bool
    note: str = ""

    @property
    def label(self) -> str:
        return f"{quantile_label(self.q)} difference"

    @property
    def excludes_zero(self) -> bool:
        return bool(self.ci_low > 0.0 or self.ci_high < 0.0)

    def to_dict(self) -> dict[str, object]:
        d = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }
        return {"label": self.label, **d}


def _check(blocks: Sequence[BlockSample], positive: bool) -> list[BlockSample]:
    kept = [b for b in blocks if b.treat.size and b.base.size]
    if not kept:
        raise ValueError("no block has rounds of both arms")
    for b in kept:
        for name, x in (("treatment", b.treat), ("baseline", b.base)):
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{name} contains NaN or infinite values")
            if positive and np.any(x <= 0):
                raise ValueError(f"{name} must be > 0 (ratios of durations)")
        if b.paired and b.treat.size != b.base.size:
            raise ValueError(f"paired block {b.label!r}: {b.treat.size} vs {b.base.size} rounds")
    return kept


def _padded(arrays: Sequence[FloatArray]) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    n = np.asarray([a.size for a in arrays], dtype=np.int64)
    out = np.full((len(arrays), int(n.max())), np.nan)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out, n


def _replicates(
    blocks: Sequence[BlockSample], q: float, n_resamples: int, seed: int
) -> tuple[FloatArray, FloatArray]:
    """Bootstrap replicates of (treatment quantile, baseline quantile), pooled over blocks."""
    rng = np.random.default_rng(seed)
    t, nt = _padded([b.treat for b in blocks])
    s, nb = _padded([b.base for b in blocks])
    paired = np.asarray([b.paired for b in blocks])
    k, width = t.shape[0], max(t.shape[1], s.shape[1])
    qt, qb = [], []
    done = 0
    while done < n_resamples:
        m = min(_CHUNK, n_resamples - done)
        done += m
        kb = rng.integers(0, k, size=(m, k)) if k > 1 else np.zeros((m, 1), dtype=np.int64)
        u_t = rng.random((m, kb.shape[1], width))
        u_b = np.where(paired[kb][..., None], u_t, rng.random((m, kb.shape[1], width)))
        it = np.floor(u_t * nt[kb][..., None]).astype(np.int64)
        ib = np.floor(u_b * nb[kb][..., None]).astype(np.int64)
        pos = np.arange(width)[None, None, :]
        vt = np.where(
            pos < nt[kb][..., None], t[kb[..., None], np.minimum(it, t.shape[1] - 1)], np.nan
        )
        vb = np.where(
            pos < nb[kb][..., None], s[kb[..., None], np.minimum(ib, s.shape[1] - 1)], np.nan
        )
        qt.append(np.nanquantile(vt.reshape(m, -1), q, axis=1))
        qb.append(np.nanquantile(vb.reshape(m, -1), q, axis=1))
    return np.concatenate(qt), np.concatenate(qb)


def _notes(blocks: Sequence[BlockSample], q: float, confidence: float) -> tuple[bool, list[str]]:
    notes = []
    if len(blocks) == 1:
        notes.append("one block: the interval covers round-to-round variation only")
    if not all(b.paired for b in blocks):
        apart = sum(not b.paired for b in blocks)
        notes.append(f"{apart} of {len(blocks)} block(s) not paired (the arms ran apart)")
    need = min_n_for_quantile_ci(q, confidence)
    small = min(sum(b.treat.size for b in blocks), sum(b.base.size for b in blocks))
    reliable = small >= need
    if not reliable:
        notes.append(
            f"CI unreliable: n={small} < {need} needed for a {confidence:.0%} CI of "
            f"{quantile_label(q)} (the bootstrap cannot reach beyond the sample extremes)"
        )
    return reliable, notes


def _z_mde(confidence: float) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2) + sps.norm.ppf(POWER))


def ratio(
    blocks: Sequence[BlockSample],
    q: float = 0.5,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
) -> RatioCI:
    """q-quantile of all treatment rounds / that of all baseline rounds of ``blocks``, with
    the two-level bootstrap interval; ``mde`` is relative (0.02: a 2% change)."""
    kept = _check(blocks, positive=True)
    pooled_t = np.concatenate([b.treat for b in kept])
    pooled_b = np.concatenate([b.base for b in kept])
    est = float(np.quantile(pooled_t, q) / np.quantile(pooled_b, q))
    reliable, notes = _notes(kept, q, confidence)
    lo = hi = mde = math.nan
    if max(pooled_t.size, pooled_b.size) >= 2:
        rt, rb = _replicates(kept, q, n_resamples, seed)
        logs = np.log(rt / rb)
        lo, hi = (
            float(np.exp(x))
            for x in np.quantile(logs, [(1 - confidence) / 2, (1 + confidence) / 2])
        )
        mde = float(math.expm1(_z_mde(confidence) * float(np.std(logs, ddof=1))))
    else:
        notes.append("n=1: no sampling variability to resample, no CI")
        reliable = False
    return RatioCI(
        q=q,
        estimate=est,
        ci_low=lo,
        ci_high=hi,
        n_treatment=int(pooled_t.size),
        n_baseline=int(pooled_b.size),
        confidence=confidence,
        method="two-level percentile bootstrap (blocks, then paired rounds)",
        reliable=reliable and not math.isnan(lo),
        note="; ".join(notes),
        blocks=len(kept),
        paired=all(b.paired for b in kept),
        mde=mde,
    )


def difference(
    blocks: Sequence[BlockSample],
    q: float = 0.5,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
) -> DiffCI:
    """q-quantile of all treatment rounds minus that of all baseline rounds (e.g. the
    communication part of a round, in seconds), with the two-level bootstrap interval."""
    kept = _check(blocks, positive=False)
    pooled_t = np.concatenate([b.treat for b in kept])
    pooled_b = np.concatenate([b.base for b in kept])
    est = float(np.quantile(pooled_t, q) - np.quantile(pooled_b, q))
    reliable, notes = _notes(kept, q, confidence)
    lo = hi = mde = math.nan
    if max(pooled_t.size, pooled_b.size) >= 2:
        rt, rb = _replicates(kept, q, n_resamples, seed)
        d = rt - rb
        lo, hi = (float(x) for x in np.quantile(d, [(1 - confidence) / 2, (1 + confidence) / 2]))
        mde = _z_mde(confidence) * float(np.std(d, ddof=1))
    else:
        notes.append("n=1: no sampling variability to resample, no CI")
        reliable = False
    return DiffCI(
        q=q,
        estimate=est,
        ci_low=lo,
        ci_high=hi,
        n_treatment=int(pooled_t.size),
        n_baseline=int(pooled_b.size),
        blocks=len(kept),
        paired=all(b.paired for b in kept),
        confidence=confidence,
        mde=mde,
        reliable=reliable and not math.isnan(lo),
        note="; ".join(notes),
    )
