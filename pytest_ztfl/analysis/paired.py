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
variation both enter. The statistic is each block's ratio averaged over blocks (log scale), or,
for tails, the quantile of all rounds pooled (``pool``).

A block holds one instance of each arm (its own pods and processes), and instances differ by a
few per cent however their rounds are paired. A comparison with few blocks cannot see that level
in its own data, so it can borrow it (``noise``, :func:`block_noise`): the spread of every
comparison the run repeated in two or more blocks, pooled (a one-way ANOVA's within-group mean
square, with its degrees of freedom). The interval is then the estimate +- Student's t times
that spread over sqrt(blocks), on the log scale, and never narrower than the comparison's own
rounds-only bootstrap. A run that repeats no comparison has nothing to measure it by: a
ratio then takes the prior ``ASSUMED`` (pytest_ztfl.analysis.compare), and a lone block's
difference (seconds, no scale-free prior) covers round-to-round variation only and is marked
unreliable.

``scipy.stats.bootstrap`` resamples one level only (its ``paired=True`` pairs observations, it
cannot draw clusters), hence this module. Each result also gives the minimum detectable effect
(MDE) of the comparison: the smallest true change it would find with 80% power at its
confidence level, from the bootstrap's standard error of the log ratio. Pure numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from pytest_ztfl.analysis.base import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    min_n_for_quantile_ci,
    quantile_label,
)
from pytest_ztfl.analysis.ratios import RatioCI

FloatArray = npt.NDArray[np.float64]
Pool = Literal["blocks", "rounds"]
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


Statistic = Callable[[FloatArray, FloatArray, npt.NDArray[np.int64]], FloatArray]


def _replicates(
    blocks: Sequence[BlockSample],
    statistic: Statistic,
    n_resamples: int,
    seed: int,
    fixed: bool = False,
) -> FloatArray:
    """``statistic`` of each bootstrap resample: blocks drawn with replacement (``fixed``: every
    block once), rounds drawn with replacement within each (the same indices for both arms when
    paired). The statistic
    gets the resampled values as arrays of shape (resamples, blocks, rounds), NaN-padded
    where a block has fewer rounds than the longest."""
    rng = np.random.default_rng(seed)
    t, nt = _padded([b.treat for b in blocks])
    s, nb = _padded([b.base for b in blocks])
    pairs = np.asarray([b.paired for b in blocks])
    k, width = t.shape[0], max(t.shape[1], s.shape[1])
    pos = np.arange(width)[None, None, :]
    out = []
    done = 0
    while done < n_resamples:
        m = min(_CHUNK, n_resamples - done)
        done += m
        if fixed or k == 1:
            kb = np.broadcast_to(np.arange(k, dtype=np.int64), (m, k))
        else:
            kb = rng.integers(0, k, size=(m, k))
        u_t = rng.random((m, kb.shape[1], width))
        u_b = np.where(pairs[kb][..., None], u_t, rng.random((m, kb.shape[1], width)))
        it = np.minimum(np.floor(u_t * nt[kb][..., None]).astype(np.int64), t.shape[1] - 1)
        ib = np.minimum(np.floor(u_b * nb[kb][..., None]).astype(np.int64), s.shape[1] - 1)
        vt = np.where(pos < nt[kb][..., None], t[kb[..., None], it], np.nan)
        vb = np.where(pos < nb[kb][..., None], s[kb[..., None], ib], np.nan)
        out.append(statistic(vt, vb, kb))
    return np.concatenate(out)


def _quantile(x: FloatArray, q: float, axis: int = -1) -> FloatArray:
    """``np.nanquantile(x, q, axis)`` (linear interpolation, NaN as padding), by one sort
    with NaN last and an index per row: numpy's nanquantile loops over rows in Python, ten
    times slower on the resample arrays here."""
    x = np.sort(np.moveaxis(x, axis, -1), axis=-1)
    n = np.sum(~np.isnan(x), axis=-1, keepdims=True)
    pos = (n - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(x, np.maximum(lo, 0), axis=-1)
    b = np.take_along_axis(x, hi, axis=-1)
    return np.asarray((a + (pos - lo) * (b - a))[..., 0])


def _statistic(q: float, pool: Pool, paired_mask: npt.NDArray[np.bool_], log: bool) -> Statistic:
    """The comparison as a function of resampled values (see :func:`ratio`): on the log
    scale for a ratio, as is for a difference."""

    def f(x: FloatArray) -> FloatArray:
        return np.log(x) if log else x

    def stat(vt: FloatArray, vb: FloatArray, kb: npt.NDArray[np.int64]) -> FloatArray:
        if pool == "rounds":
            m = vt.shape[0]
            return f(_quantile(vt.reshape(m, -1), q)) - f(_quantile(vb.reshape(m, -1), q))
        per = f(_quantile(vt, q)) - f(_quantile(vb, q))
        if q == 0.5:
            # Paired blocks: the median of the round-by-round comparisons. A drift both arms
            # met in the same round cancels there, not in a ratio of two separate medians.
            rounds = _quantile(f(vt) - f(vb), 0.5)
            per = np.where(paired_mask[kb], rounds, per)
        return np.asarray(per.mean(axis=1))

    return stat


def _estimate(blocks: Sequence[BlockSample], stat: Statistic) -> float:
    """The statistic on the data as measured (one "resample": every block, every round)."""
    t, _ = _padded([b.treat for b in blocks])
    s, _ = _padded([b.base for b in blocks])
    if t.shape[1] != s.shape[1]:  # unpaired blocks of other lengths: pad to one width
        w = max(t.shape[1], s.shape[1])
        t = np.pad(t, ((0, 0), (0, w - t.shape[1])), constant_values=np.nan)
        s = np.pad(s, ((0, 0), (0, w - s.shape[1])), constant_values=np.nan)
    kb = np.arange(len(blocks))[None, :]
    return float(stat(t[None, ...], s[None, ...], kb)[0])


@dataclass(frozen=True)
class BlockNoise:
    """How far one block's comparison strays from the same comparison in the run's other blocks:
    ``var`` is the pooled variance of a block's statistic (the median's, on the log scale for
    ratios) about its comparison's mean, with ``df`` degrees of freedom, from ``blocks`` blocks
    of ``groups`` comparisons each repeated in two or more blocks. It holds every level below
    the block: the arms' instances and their rounds."""

    var: float
    df: int
    blocks: int
    groups: int
    assumed: bool = False  # not measured: a prior (ASSUMED), taken as known (normal, not t)

    def describe(self, log: bool) -> str:
        sd = math.sqrt(self.var)
        shown = f"{math.expm1(sd):.1%}" if log else f"{sd:.3g}"
        if self.assumed:
            return (
                f"instance noise assumed {shown} per block (no comparison repeated in the run "
                "to measure it)"
            )
        return (
            f"instance noise {shown} per block (sd; pooled over {self.blocks} blocks of "
            f"{self.groups} repeated comparisons, df {self.df})"
        )

    def t(self, p: float) -> float:
        return float(sps.norm.ppf(p) if self.assumed else sps.t.ppf(p, self.df))


# A ratio's instance noise when the run repeats no comparison (one seed, one data split):
# 3% per block, above every run measured on the 2-core machine (0.9-2.6% in the committed
# quick and trust runs, docs/results), so a lone block's interval is not narrower than what
# a repeat would show there. Only for ratios: a difference in seconds has no scale-free prior.
ASSUMED = BlockNoise(math.log1p(0.03) ** 2, 0, 0, 0, assumed=True)


def block_noise(groups: Iterable[Sequence[BlockSample]], log: bool = True) -> BlockNoise | None:
    """The pooled spread of each block's median comparison about its group's mean, over the
    groups with two or more paired blocks (a group: one comparison repeated on other data
    splits or seeds); None when no group has two. Ratios (``log``) need values > 0: a group
    that has others is left out."""
    stat = _statistic(0.5, "blocks", np.ones(1, dtype=bool), log=log)
    squares, df, n_blocks, n_groups = 0.0, 0, 0, 0
    for group in groups:
        try:
            kept = [b for b in _check(group, positive=log) if b.paired]
        except ValueError:
            continue
        if len(kept) < 2:
            continue
        d = np.asarray([_estimate([b], stat) for b in kept])
        squares += float(np.sum((d - d.mean()) ** 2))
        df += len(d) - 1
        n_blocks += len(d)
        n_groups += 1
    if df == 0:
        return None
    return BlockNoise(squares / df, df, n_blocks, n_groups)


def _notes(
    blocks: Sequence[BlockSample], q: float, confidence: float, pool: Pool, borrowed: bool
) -> tuple[bool, list[str]]:
    notes = []
    if len(blocks) == 1 and not borrowed:
        notes.append(
            "one block and no repeat of a comparison in the run to measure its instance noise: "
            "the interval covers round-to-round variation only"
        )
    if not all(b.paired for b in blocks):
        apart = sum(not b.paired for b in blocks)
        notes.append(f"{apart} of {len(blocks)} block(s) not paired (the arms ran apart)")
    need = min_n_for_quantile_ci(q, confidence)
    # a per-block quantile rests on one block's rounds; a pooled one on all of them
    sizes = [min(b.treat.size, b.base.size) for b in blocks]
    small = min(sizes) if pool == "blocks" else min(
        sum(b.treat.size for b in blocks), sum(b.base.size for b in blocks)
    )
    reliable = small >= need and (borrowed or len(blocks) > 1)
    if small < need:
        notes.append(
            f"CI unreliable: n={small} < {need} needed for a {confidence:.0%} CI of "
            f"{quantile_label(q)} (the bootstrap cannot reach beyond the sample extremes)"
        )
    return reliable, notes


def _z_mde(confidence: float) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2) + sps.norm.ppf(POWER))


@dataclass(frozen=True)
class _Found:
    """One comparison on the scale it is bootstrapped on (log for a ratio): the estimate, the
    interval's bounds, the replicates' standard deviation, and what to say of them."""

    kept: list[BlockSample]
    estimate: float
    low: float
    high: float
    mde: float  # on the comparison's scale
    reliable: bool
    note: str
    method: str

    @property
    def n(self) -> tuple[int, int]:
        return sum(b.treat.size for b in self.kept), sum(b.base.size for b in self.kept)


def _compare(
    blocks: Sequence[BlockSample],
    q: float,
    pool: Pool,
    log: bool,
    confidence: float,
    n_resamples: int,
    seed: int,
    noise: BlockNoise | None = None,
) -> _Found:
    kept = _check(blocks, positive=log)
    stat = _statistic(q, pool, np.asarray([b.paired for b in kept]), log=log)
    est = _estimate(kept, stat)
    reliable, notes = _notes(kept, q, confidence, pool, borrowed=noise is not None)
    lo = hi = mde = math.nan
    method = f"two-level percentile bootstrap (blocks, then paired rounds), pooled by {pool}"
    if max(sum(b.treat.size for b in kept), sum(b.base.size for b in kept)) >= 2:
        # measured noise holds the blocks' level: resample rounds only (blocks fixed)
        fixed = noise is not None and not noise.assumed
        reps = _replicates(kept, stat, n_resamples, seed, fixed=fixed)
        a = (1 - confidence) / 2
        lo, hi = (float(x) for x in np.quantile(reps, [a, 1 - a]))
        sd = float(np.std(reps, ddof=1))
        mde = _z_mde(confidence) * sd
        if noise is not None:
            se = math.sqrt(noise.var / len(kept))
            t = noise.t(1 - a)
            lo, hi = est - max(est - lo, t * se), est + max(hi - est, t * se)
            mde = max(mde, (t + noise.t(POWER)) * se)
            notes.append(noise.describe(log))
            which = "t(" + str(noise.df) + ")" if not noise.assumed else "z"
            method = (
                f"estimate +- {which} x the instance noise / sqrt({len(kept)} blocks), at "
                f"least the percentile bootstrap of the rounds; pooled by {pool}"
            )
    else:
        notes.append("n=1: no sampling variability to resample, no CI")
        reliable = False
    ok = reliable and not math.isnan(lo)
    return _Found(kept, est, lo, hi, mde, ok, "; ".join(notes), method)


def ratio(
    blocks: Sequence[BlockSample],
    q: float = 0.5,
    *,
    pool: Pool = "blocks",
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    noise: BlockNoise | None = None,
) -> RatioCI:
    """The treatment's q-quantile over the baseline's, with the two-level bootstrap interval;
    ``mde`` is relative (0.02: a 2% change).

    ``pool="blocks"`` (the default): each block's ratio, averaged over blocks on the log
    scale (a geometric mean), so blocks at different levels (a data split, a slower phase
    of the machine) each count once and never mix. A paired block's median ratio is the
    median of its round-by-round ratios (a drift both arms met cancels round by round); an
    unpaired block's, the ratio of its two medians. ``pool="rounds"``: the quantile of all
    rounds of all blocks together, as the seed study pooled its seeds; what a tail quantile
    needs, since no block of a few dozen rounds can estimate one on its own."""
    f = _compare(blocks, q, pool, True, confidence, n_resamples, seed, noise)
    return RatioCI(
        q=q,
        estimate=math.exp(f.estimate),
        ci_low=math.exp(f.low),
        ci_high=math.exp(f.high),
        n_treatment=f.n[0],
        n_baseline=f.n[1],
        confidence=confidence,
        method=f.method,
        reliable=f.reliable,
        note=f.note,
        blocks=len(f.kept),
        paired=all(b.paired for b in f.kept),
        mde=math.expm1(f.mde),
    )


def difference(
    blocks: Sequence[BlockSample],
    q: float = 0.5,
    *,
    pool: Pool = "blocks",
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    noise: BlockNoise | None = None,
) -> DiffCI:
    """The treatment's q-quantile minus the baseline's (e.g. the communication part of a
    round, in seconds), averaged over blocks (or pooled over rounds, ``pool``), with the
    two-level bootstrap interval."""
    f = _compare(blocks, q, pool, False, confidence, n_resamples, seed, noise)
    return DiffCI(
        q=q,
        estimate=f.estimate,
        ci_low=f.low,
        ci_high=f.high,
        n_treatment=f.n[0],
        n_baseline=f.n[1],
        blocks=len(f.kept),
        paired=all(b.paired for b in f.kept),
        confidence=confidence,
        mde=f.mde,
        reliable=f.reliable,
        note=f.note,
    )
