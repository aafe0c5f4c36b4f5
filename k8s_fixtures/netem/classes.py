"""From profiles to the delay line's classes: one direction of one link as a
:class:`~.models.ClassSpec`, and the NFQUEUE length its bandwidth-delay product needs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from . import tc
from .models import ClassSpec
from .profiles import Profile, queue_limit_bytes

DELAYLINE_MAX_PPS = 150_000  # one core, measured (PLATFORM_NOTES): the cap for unrated links


def class_spec(profile: Profile, direction: str, mtu: int = 1500) -> ClassSpec:
    """One direction of a link as a delay class, its rate included: the delay line shapes it
    (:mod:`.shaper`) with the buffer a tbf of the same profile has (queue plus bucket)."""
    d = profile.direction(direction)
    limit = 0
    if d.rate_mbit is not None:
        limit = (queue_limit_bytes(profile, direction) or 0) + tc.tbf_burst_bytes(d.rate_mbit)
    return ClassSpec(delay_ms=d.delay_ms, jitter_ms=d.jitter_ms, jitter_dist=d.jitter_dist,
                     loss_pct=d.loss_pct, loss_model=d.loss_model, loss_burst=d.loss_burst,
                     reorder=d.reorder, seed=profile.seed, rate_mbit=d.rate_mbit,
                     limit_bytes=limit, mtu=mtu)


def queue_max_len(profiles: Sequence[Profile], direction: str) -> int:
    """NFQUEUE length from the bandwidth-delay product: packets held at the highest packet
    rate (this direction's data, or the ACKs of the other's) for the longest hold, x2."""
    need = 1024
    other = "down" if direction == "up" else "up"
    for p in profiles:
        d, o = p.direction(direction), p.direction(other)
        rates = [r for r in (d.rate_mbit, o.rate_mbit) if r is not None]
        pps = (DELAYLINE_MAX_PPS if len(rates) < 2 else
               max(rates) * 1e6 / 8 / tc.MTU_FRAME)
        hold_s = (d.delay_ms + 4 * d.jitter_std_ms) / 1e3
        need = max(need, math.ceil(2 * pps * hold_s) + 64)
    return need
