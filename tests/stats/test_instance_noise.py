"""Instance noise (pytest_ztfl.analysis.paired.block_noise): a block holds one instance of each
arm, and instances differ by a few per cent however well their rounds are paired. Simulated
runs with that structure (an instance effect per arm and block, a drift both arms meet, round
noise): a lone block's round-only interval calls the instance difference significant far more
often than 5%; with the noise borrowed from the run's repeats it does not, and a real effect is
still found."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_ztfl.analysis import compare, paired

N_RESAMPLES = 400  # enough for a 95% interval's ends at the precision these rates need


def _run(
    rng: np.random.Generator,
    blocks: int = 4,
    treatments: int = 3,
    effect: float = 1.0,
    instance: float = 0.02,
    noise: float = 0.01,
    n: int = 10,
) -> dict[str, list[paired.BlockSample]]:
    """One simulated run: per block a baseline arm and ``treatments`` arms, each an instance
    with its own level (sd ``instance``, log scale); every treatment's true ratio ``effect``."""
    out: dict[str, list[paired.BlockSample]] = {f"t{j}": [] for j in range(treatments)}

    def arm(level: float, shared: paired.FloatArray) -> paired.FloatArray:
        u = rng.normal(0, instance)
        return level * np.exp(shared + u + rng.normal(0, noise, n))

    for i in range(blocks):
        shared = np.cumsum(rng.normal(0, 0.05, n))
        level = 0.7 * math.exp(rng.normal(0, 0.1))
        base = arm(level, shared)
        for j in range(treatments):
            treat = arm(level * effect, shared)
            out[f"t{j}"].append(paired.BlockSample(treat, base, True, f"b{i}"))
    return out


def _exclusion_rates(effect: float, runs: int = 60) -> tuple[float, float]:
    """Share of lone-block intervals excluding 1: round-only, and with borrowed noise."""
    rng = np.random.default_rng(2026)
    plain = borrowed = total = 0
    for _ in range(runs):
        groups = _run(rng, effect=effect)
        noise = paired.block_noise(groups.values())
        assert noise is not None and noise.df == 3 * (4 - 1)
        for samples in groups.values():
            for b in samples:
                r0 = paired.ratio([b], n_resamples=N_RESAMPLES, seed=total)
                r1 = paired.ratio([b], n_resamples=N_RESAMPLES, seed=total, noise=noise)
                plain += r0.excludes_one
                borrowed += r1.excludes_one
                total += 1
    return plain / total, borrowed / total


def test_a_lone_blocks_interval_covers_the_arms_instances() -> None:
    plain, borrowed = _exclusion_rates(effect=1.0)
    assert plain > 0.3  # the old interval: instance differences called significant
    assert borrowed <= 0.10  # nominal 5%


def test_a_real_effect_is_still_found_in_a_lone_block() -> None:
    _, borrowed = _exclusion_rates(effect=1.15, runs=20)
    assert borrowed >= 0.9


def test_block_noise_is_the_pooled_spread_of_each_comparisons_repeats() -> None:
    base = np.full(6, 0.5)

    def block(factor: float) -> paired.BlockSample:
        return paired.BlockSample(base * factor, base, True)

    groups = [[block(1.0), block(1.02), block(0.98)], [block(1.1), block(1.2)]]
    found = paired.block_noise(groups)
    assert found is not None
    d1 = np.log([1.0, 1.02, 0.98])
    d2 = np.log([1.1, 1.2])
    want = (np.sum((d1 - d1.mean()) ** 2) + np.sum((d2 - d2.mean()) ** 2)) / 3
    assert math.isclose(found.var, want, rel_tol=1e-9)
    assert (found.df, found.blocks, found.groups) == (3, 5, 2)
    assert "pooled over 5 blocks of 2 repeated comparisons, df 3" in found.describe(True)


def test_no_repeat_no_noise() -> None:
    base = np.full(6, 0.5)
    one = [[paired.BlockSample(base * 1.1, base, True)], [paired.BlockSample(base, base, True)]]
    assert paired.block_noise(one) is None
    apart = [[paired.BlockSample(base, base, False), paired.BlockSample(base, base, False)]]
    assert paired.block_noise(apart) is None  # unpaired blocks: arms that met other moments


def test_without_a_repeat_a_ratio_takes_the_assumed_prior() -> None:
    rng = np.random.default_rng(5)
    t = compare.ArmRounds("t", "r", dict(enumerate(rng.normal(1.0, 0.001, 10))))
    b = compare.ArmRounds("b", "r", dict(enumerate(rng.normal(1.0, 0.001, 10))))
    r = compare.arm_ratio([(t, b)])
    half = 1.959964 * math.sqrt(paired.ASSUMED.var)
    assert math.log(r.ci_high) - math.log(r.estimate) == pytest.approx(half, rel=1e-3)
    assert "assumed 3.0%" in r.note and r.reliable
    # a difference has no such prior: a lone block says what its interval covers
    d = compare.arm_difference([(t, b)])
    assert not d.reliable and "round-to-round variation only" in d.note
