"""Sample-weighted federated averaging (FedAvg, McMahan et al. 2017) over numpy weight dicts.

Accumulates in float64 and returns float32, so the result does not depend on client order
beyond float64 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl_app.tensors import NDArrays


def fedavg(updates: Sequence[tuple[NDArrays, int]]) -> NDArrays:
    """Average ``(weights, num_samples)`` pairs, each weighted by its sample count."""
    if not updates:
        raise ValueError("fedavg: no updates to aggregate")
    total = sum(n for _, n in updates)
    if total <= 0 or any(n <= 0 for _, n in updates):
        raise ValueError("fedavg: every update needs a positive sample count")
    keys = list(updates[0][0])
    out: NDArrays = {}
    for k in keys:
        acc = np.zeros(updates[0][0][k].shape, dtype=np.float64)
        for weights, n in updates:
            acc += weights[k].astype(np.float64) * (n / total)
        out[k] = acc.astype(np.float32)
    return out
