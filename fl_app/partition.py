"""Seeded client partitions of a labelled dataset: ``iid`` and ``dirichlet-<alpha>`` label skew.

Same (split, labels, clients, seed) -> the same partition, on every machine. Each partition is
a list of index arrays that together cover every sample exactly once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

MAX_DIRICHLET_ATTEMPTS = 1000


class PartitionError(ValueError):
    """The split specification is invalid or cannot give every client its minimum."""


@dataclass(frozen=True)
class SplitSpec:
    kind: str  # "iid" | "dirichlet"
    alpha: float = math.inf

    @property
    def label(self) -> str:
        """Short name for cell ids: ``iid`` or ``noniid`` (any dirichlet)."""
        return "iid" if self.kind == "iid" else "noniid"

    def __str__(self) -> str:
        return "iid" if self.kind == "iid" else f"dirichlet-{self.alpha:g}"


def parse_split(text: str) -> SplitSpec:
    """Parse ``iid`` or ``dirichlet-<alpha>`` (alpha > 0, finite)."""
    if text == "iid":
        return SplitSpec("iid")
    m = re.fullmatch(r"dirichlet-([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)", text)
    if not m:
        raise PartitionError(f"split {text!r}: expected 'iid' or 'dirichlet-<alpha>'")
    alpha = float(m.group(1))
    if not (alpha > 0 and math.isfinite(alpha)):
        raise PartitionError(f"split {text!r}: alpha must be a finite number > 0")
    return SplitSpec("dirichlet", alpha)


def partition(
    labels: np.ndarray, num_clients: int, spec: SplitSpec, seed: int, min_samples: int = 10
) -> list[np.ndarray]:
    """Split ``range(len(labels))`` over ``num_clients`` clients; each gets >= ``min_samples``."""
    n = len(labels)
    if num_clients < 1:
        raise PartitionError(f"clients {num_clients}: must be >= 1")
    if num_clients * min_samples > n:
        raise PartitionError(
            f"clients {num_clients} x min_samples {min_samples} exceeds the {n} samples"
        )
    rng = np.random.default_rng(seed)
    if spec.kind == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(n), num_clients)]
    classes = np.unique(labels)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    for _ in range(MAX_DIRICHLET_ATTEMPTS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            props = rng.dirichlet(np.full(num_clients, spec.alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
        result = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in result) >= min_samples:
            return result
    raise PartitionError(
        f"split {spec}: no partition in {MAX_DIRICHLET_ATTEMPTS} draws gives every one of "
        f"{num_clients} clients {min_samples} samples (raise alpha or lower min_samples)"
    )


def summary(parts: list[np.ndarray], labels: np.ndarray) -> list[dict[str, object]]:
    """Per-client sample counts and label histograms, for the run_start event."""
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    return [
        {
            "client": i,
            "samples": len(p),
            "labels": np.bincount(labels[p], minlength=num_classes).tolist(),
        }
        for i, p in enumerate(parts)
    ]
