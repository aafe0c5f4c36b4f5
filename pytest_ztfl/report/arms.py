"""The report's comparisons of two arms: which run is a run's baseline (its block's SEC0 arm),
whether two arms' rounds pair (one block run), and analysis.compare's ratio or difference
over the usable pairs, with what was left out and why."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from pytest_ztfl.analysis import compare
from pytest_ztfl.analysis.paired import DiffCI
from pytest_ztfl.analysis.ratios import RatioCI
from pytest_ztfl.report.model import Run
from pytest_ztfl.sec import Sec

RATIO_QUANTILES = (0.5, 0.95)  # of comparisons between arms (p99: descriptive only)

Pair = tuple[Run, Run]  # (treatment, baseline)


def pair_with(treat: Iterable[Run], base: Iterable[Run]) -> list[Pair]:
    """Each treatment run with the baseline run of its block: same data split, seed and fault,
    else (a fault the baseline cannot carry) the unfaulted one; in treatment-id order. The
    caller chooses the NET and SEC of each side."""
    index = {(b.data, b.seed, b.fault): b for b in base}
    out = []
    for t in sorted(treat, key=lambda r: r.id):
        b = index.get((t.data, t.seed, t.fault)) or index.get((t.data, t.seed, None))
        if b is not None:
            out.append((t, b))
    return out


def is_paired(pair: Pair) -> bool:
    """The two arms ran in one block run: their rounds pair (pytest_ztfl.analysis.compare)."""
    t, b = pair
    return t.block_run is not None and t.block_run == b.block_run


def pairing(pairs: Sequence[Pair]) -> str:
    """``paired``, ``unpaired`` or ``3 of 4 blocks paired``."""
    n = sum(map(is_paired, pairs))
    if n == len(pairs):
        return "paired"
    return "unpaired" if n == 0 else f"{n} of {len(pairs)} blocks paired"


def baseline_of(run: Run, runs: Iterable[Run]) -> Run | None:
    """The run's block's SEC0 arm (matrix.Cell.baseline): never a check arm; None for the
    SEC0 arm itself."""
    if run.sec == Sec.SEC0 and run.check is None:
        return None
    sec0 = [r for r in runs if r.sec == Sec.SEC0 and r.check is None and r.net == run.net]
    found = pair_with([run], sec0)
    return found[0][1] if found else None


def arm_ratios(
    pairs: Sequence[Pair],
    seed: int,
    qs: Sequence[float] = RATIO_QUANTILES,
    metric: str = "duration",
    noise: compare.Noise = compare.NO_NOISE,
) -> tuple[tuple[RatioCI, ...], str]:
    """compare.arm_ratio of ``metric`` over ``pairs`` (one block each) at every q; or why not.
    A pair with a row that had a harness error or failed proofs is left out (and said)."""
    use, left = _usable(pairs)
    arms = [(t.arm(metric), b.arm(metric)) for t, b in use]
    if not any(t.values and b.values for t, b in arms):
        why = "no completed rounds to compare" if metric == "duration" else "not recorded"
        return (), _and(why, left)
    try:
        found = noise.of(metric, log=True)
        rs = tuple(compare.arm_ratio(arms, q, seed, found) for q in qs)
    except ValueError as exc:  # e.g. a zero duration: a ratio is undefined
        return (), _and(str(exc), left)
    return (rs, left) if not left else (tuple(replace(r, note=_and(r.note, left)) for r in rs), "")


def _usable(pairs: Sequence[Pair]) -> tuple[list[Pair], str]:
    """The pairs whose rows may be compared; a row with a harness error or failed proofs is
    left out and said (one with no completed rounds just has nothing to give)."""
    use = [(t, b) for t, b in pairs if t.sound and b.sound]
    n = len(pairs) - len(use)
    return use, f"{n} pair(s) left out: a row with an error or failed proofs" if n else ""


def _and(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def arm_difference(
    pairs: Sequence[Pair],
    seed: int,
    metric: str = "duration",
    q: float = 0.5,
    noise: compare.Noise = compare.NO_NOISE,
) -> tuple[DiffCI | None, str]:
    """compare.arm_difference of ``metric`` (seconds) over ``pairs``; or why not (unusable
    pairs are left out, as in :func:`arm_ratios`)."""
    use, left = _usable(pairs)
    arms = [(t.arm(metric), b.arm(metric)) for t, b in use]
    if not any(t.values and b.values for t, b in arms):
        why = "no completed rounds to compare" if metric == "duration" else "not recorded"
        return None, _and(why, left)
    try:
        d = compare.arm_difference(arms, q, seed, noise.of(metric, log=False))
    except ValueError as exc:
        return None, _and(str(exc), left)
    return (replace(d, note=_and(d.note, left)), "") if left else (d, "")
