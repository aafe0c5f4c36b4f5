"""Comparisons between arms: which rounds pair with which, and the ratio (or difference) of a
per-round metric, as the gates, the terminal summary and the report all use it.

An arm is one cell's completed rounds of one metric, with the block run it was measured in
(``ArmRounds``). Two arms pair when they ran in the same block run (``design.block_run``):
their rounds are then matched by round number. Arms of different block runs (a resumed matrix,
a stored baseline run) are compared unpaired. The metrics are per round: ``duration`` (the
server's round time), ``compute_seconds`` (slowest training + aggregation), ``comm_seconds``
(the rest: communication and the controls on its path), ``path_seconds`` (mean over the
participants of their exchange's time outside training; the steadier measure of a control's
cost), ``cpu_seconds`` (CPU of every
container of the arm during its round).

A comparison borrows its instance-level noise from the run (``Noise``; see
pytest_ztfl.analysis.paired): the spread of every comparison the run repeated in two or more
blocks (the same SEC level, mTLS mode, NET and check against its block's SEC0 arm, on other
data splits or seeds), per metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_ztfl.analysis import paired
from pytest_ztfl.analysis.base import DEFAULT_CONFIDENCE
from pytest_ztfl.analysis.ratios import RatioCI
from pytest_ztfl.sec import Sec

Row = dict[str, Any]
METRICS = ("duration", "compute_seconds", "comm_seconds", "path_seconds", "cpu_seconds")


@dataclass(frozen=True)
class ArmRounds:
    """One arm's completed rounds of one metric: ``{round number: value}``."""

    label: str
    block_run: str | None
    values: dict[int, float] = field(default_factory=dict)


def values(row: Row, metric: str = "duration") -> dict[int, float]:
    """``{round number: value}`` of a row's completed rounds that have the metric."""
    return {
        int(r["round"]): float(r[metric])
        for r in row["metrics"]["rounds"]
        if r["ok"] and r.get(metric) is not None
    }


def of_row(row: Row, metric: str = "duration") -> ArmRounds:
    run = (row.get("design") or {}).get("block_run")
    return ArmRounds(row["cell"]["id"], run if isinstance(run, str) else None, values(row, metric))


def sample(treat: ArmRounds, base: ArmRounds) -> paired.BlockSample:
    """Two arms as one block: paired when they ran in the same block run."""
    label = f"{treat.label} vs {base.label}"
    if treat.block_run is not None and treat.block_run == base.block_run:
        return paired.match_rounds(treat.values, base.values, label)
    return paired.unmatched(list(treat.values.values()), list(base.values.values()), label)


def pool_for(q: float) -> paired.Pool:
    """How a comparison over blocks pools: the median block by block (each block's ratio, a
    geometric mean over blocks), a tail over all rounds (no block holds enough of them)."""
    return "blocks" if q <= 0.5 else "rounds"


Repeat = tuple[str, ArmRounds, ArmRounds]  # (comparison, treatment, its block's baseline)


class Noise:
    """A run's instance-level noise per metric (paired.block_noise), from its repeated
    comparisons; ``repeats(metric)`` gives them (every treatment arm with its block's SEC0 arm
    and the comparison's name), computed once per metric and scale."""

    def __init__(self, repeats: Callable[[str], Iterable[Repeat]]) -> None:
        self._repeats = repeats
        self._found: dict[tuple[str, bool], paired.BlockNoise | None] = {}

    def of(self, metric: str = "duration", log: bool = True) -> paired.BlockNoise | None:
        if (metric, log) not in self._found:
            groups: dict[str, list[paired.BlockSample]] = {}
            for name, t, b in self._repeats(metric):
                groups.setdefault(name, []).append(sample(t, b))
            self._found[metric, log] = paired.block_noise(groups.values(), log=log)
        return self._found[metric, log]

    @classmethod
    def of_arms(cls, arms: Iterable[NoiseArm]) -> Noise:
        """From a run's arms: each treatment arm with its own block run's SEC0 arm, under the
        name of its comparison."""
        arms = list(arms)
        base: dict[str | None, NoiseArm] = {
            a.block_run: a for a in arms if a.name is None and a.block_run is not None
        }

        def repeats(metric: str) -> list[Repeat]:
            return [
                (a.name, a.rounds(metric), b.rounds(metric))
                for a in arms
                if a.name is not None and (b := base.get(a.block_run)) is not None
            ]

        return cls(repeats)

    @classmethod
    def of_rows(cls, rows: Iterable[Row]) -> Noise:
        """From result rows: each usable row without a fault, against the SEC0 arm (no check)
        of its own block run."""

        def arm(r: Row) -> NoiseArm:
            c = r["cell"]
            base = c["sec"] == Sec.SEC0 and not c.get("check")
            name = "-".join(str(c.get(k)) for k in ("sec", "mtls", "net", "check"))
            run = (r.get("design") or {}).get("block_run")
            return NoiseArm(None if base else name, run if isinstance(run, str) else None,
                            lambda metric: of_row(r, metric))

        return cls.of_arms(arm(r) for r in rows if usable(r) and not r["cell"].get("fault"))


@dataclass(frozen=True)
class NoiseArm:
    """One arm for :class:`Noise`: its comparison's name (None: its block's SEC0 arm, the
    baseline), its block run, and its rounds of a metric."""

    name: str | None
    block_run: str | None
    rounds: Callable[[str], ArmRounds]


NO_NOISE = Noise(lambda metric: ())


def arm_ratio(
    pairs: Sequence[tuple[ArmRounds, ArmRounds]],
    q: float = 0.5,
    seed: int = 0,
    noise: paired.BlockNoise | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RatioCI:
    """Raises ValueError when no pair has rounds of both arms (or a value is not > 0).
    ``noise``: the run's measured instance noise; None: the prior ``paired.ASSUMED``."""
    blocks = [sample(t, b) for t, b in pairs]
    found = noise if noise is not None else paired.ASSUMED
    return paired.ratio(
        blocks, q, pool=pool_for(q), seed=seed, noise=found, confidence=confidence
    )


def arm_difference(
    pairs: Sequence[tuple[ArmRounds, ArmRounds]],
    q: float = 0.5,
    seed: int = 0,
    noise: paired.BlockNoise | None = None,
) -> paired.DiffCI:
    blocks = [sample(t, b) for t, b in pairs]
    return paired.difference(blocks, q, pool=pool_for(q), seed=seed, noise=noise)


def ratio(
    pairs: Sequence[tuple[Row, Row]],
    q: float = 0.5,
    metric: str = "duration",
    seed: int = 0,
    noise: Noise = NO_NOISE,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RatioCI:
    """:func:`arm_ratio` of result rows (treatment row, baseline row), with the instance noise
    ``noise`` measured of ``metric``."""
    arms = [(of_row(t, metric), of_row(b, metric)) for t, b in pairs]
    return arm_ratio(arms, q, seed, noise.of(metric, log=True), confidence)


def difference(
    pairs: Sequence[tuple[Row, Row]],
    q: float = 0.5,
    metric: str = "duration",
    seed: int = 0,
    noise: Noise = NO_NOISE,
) -> paired.DiffCI:
    """:func:`arm_difference` of result rows (treatment row, baseline row)."""
    arms = [(of_row(t, metric), of_row(b, metric)) for t, b in pairs]
    return arm_difference(arms, q, seed, noise.of(metric, log=False))


def usable(row: Row | None) -> bool:
    """A row that may enter a comparison: measured, its proofs passed, no harness error."""
    return (
        row is not None
        and not row.get("error")
        and all(p.get("passed") for p in row.get("proofs", []))
        and bool(values(row))
    )
