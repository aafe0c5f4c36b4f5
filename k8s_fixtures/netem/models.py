"""Per-packet random models of the delay line: delay samplers and loss processes (seeded).

Pure Python, no kernel: the delay line calls these for every packet, and tests check their
statistics directly. Each direction of each link has its own generators, seeded from the
profile seed and the queue number, so a run's loss pattern is reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# Standardised Pareto(alpha=3, xm=1): mean 1.5, variance 0.75.
_PARETO_ALPHA = 3.0
_PARETO_MEAN = 1.5
_PARETO_STD = math.sqrt(0.75)
_PN_NORM = math.sqrt(0.75**2 + 0.25**2)


@dataclass(frozen=True)
class ClassSpec:
    """What one delay class (one direction of one client link) does to its packets."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_dist: str = "normal"
    loss_pct: float = 0.0
    loss_model: str = "bernoulli"
    loss_burst: float = 1.0
    reorder: bool = False
    seed: int = 0
    rate_mbit: float | None = None  # Ethernet frames; None: unlimited (see .shaper)
    limit_bytes: int = 0  # the rate's queue: bytes that may wait for the link
    mtu: int = 1500  # the link's: how many frames a GSO packet will be


class DelaySampler:
    """Draw one-way delays in seconds from the configured distribution (truncated at 0)."""

    def __init__(self, spec: ClassSpec, rng: random.Random) -> None:
        self.mu = spec.delay_ms / 1e3
        self.j = spec.jitter_ms / 1e3
        self.dist = spec.jitter_dist
        self.rng = rng

    def sample(self) -> float:
        if self.j <= 0:
            return self.mu
        if self.dist == "uniform":
            x = self.mu + self.rng.uniform(-self.j, self.j)
        elif self.dist == "paretonormal":
            p = (self.rng.paretovariate(_PARETO_ALPHA) - _PARETO_MEAN) / _PARETO_STD
            z = (0.75 * self.rng.gauss(0.0, 1.0) + 0.25 * p) / _PN_NORM
            x = self.mu + self.j * z
        else:
            x = self.rng.gauss(self.mu, self.j)
        return x if x > 0.0 else 0.0


class LossProcess:
    """Decide per packet whether it is lost: Bernoulli, or Simple Gilbert (bursty) loss.

    Gilbert: in the bad state every packet is lost; P(bad->good) = 1/burst and
    P(good->bad) = r*p/(1-p) so the stationary loss rate is p (netem ``loss gemodel``).
    """

    def __init__(self, spec: ClassSpec, rng: random.Random) -> None:
        self.p = spec.loss_pct / 100.0
        self.rng = rng
        self.gilbert = spec.loss_model == "gilbert" and spec.loss_burst > 1.0
        self.r = 1.0 / spec.loss_burst
        self.g2b = min(1.0, self.r * self.p / (1.0 - self.p)) if self.p < 1 else 1.0
        self.bad = False

    def lost(self) -> bool:
        if self.p <= 0.0:
            return False
        if not self.gilbert:
            return self.rng.random() < self.p
        if self.bad:
            self.bad = self.rng.random() >= self.r
        else:
            self.bad = self.rng.random() < self.g2b
        return self.bad


def class_rngs(seed: int, queue_num: int) -> tuple[random.Random, random.Random]:
    """Independent generators for delay and loss of one class (loss draws do not depend on
    how many delay samples were taken, so changing jitter does not change the loss pattern)."""
    return (random.Random(f"delay:{seed}:{queue_num}"), random.Random(f"loss:{seed}:{queue_num}"))
