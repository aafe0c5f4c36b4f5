"""What is checked before a matrix run touches anything: its NET profile names, that pytest-xdist
is not splitting it, that no round of it can fit its deadline at its NET profile (a warning),
and that the data is there (fetched only when a cell is about to be measured)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

from fl_app.data import DataError, check_mnist
from fl_app.model_sizes import model_bytes
from k8s_fixtures.netem import load_profiles, round_budget_warning
from k8s_fixtures.netem.profiles import Profile
from pytest_ztfl import matrix as mx
from pytest_ztfl import options


def net_profiles(config: pytest.Config) -> dict[str, Profile]:
    """The NET profiles a matrix may use (the built-in ones, or ``--ztfl-net-profiles``),
    parsed once per session and handed to whoever needs them."""
    path = options._get(config, "net-profiles")
    try:
        return load_profiles(path)
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--ztfl-net-profiles={path}: {exc}") from None


def round_budget_warnings(cells: list[mx.Cell], table: Mapping[str, Profile]) -> list[str]:
    """One line per (NET, model, deadline) of the matrix whose round cannot fit: the minimum
    transfer time (delay + serialisation at the profile's rates, each way) beats the deadline."""
    by_key: dict[tuple[str, str, float], int] = {}
    for c in cells:
        # the cell's profile and, with heterogeneity, each device class's own
        nets = {c.net} | {k.net for k in (c.hetero.classes if c.hetero else ()) if k.net}
        for net in sorted(nets):
            key = (net, c.workload.model, c.workload.round_deadline)
            by_key[key] = by_key.get(key, 0) + 1
    out = []
    for (net, model, deadline), n in sorted(by_key.items()):
        line = round_budget_warning(table[net], model_bytes(model), deadline)
        if line is not None:
            out.append(f"{line}: {n} cell(s) with model {model} will miss it in every round")
    return out


def refuse_xdist(config: pytest.Config) -> None:
    """pytest-xdist would give every worker its own cluster, results and order: a matrix's
    concurrency is --ztfl-parallel's (blocks that may overlap, on one cluster)."""
    workers = getattr(config.option, "numprocesses", None)
    if hasattr(config, "workerinput") or (workers not in (None, 0, "0")):
        raise pytest.UsageError(
            f"-n {workers if workers is not None else '(xdist worker)'}: pytest-xdist cannot "
            "run a matrix (each worker would build its own cluster and results); use "
            "--ztfl-parallel=N to measure N blocks at once"
        )


def ensure_data(path: str) -> None:
    """Make sure MNIST is in ``path`` (downloading it when absent); a usage error otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
        check_mnist(path, download=True)
    except (OSError, DataError) as exc:
        raise pytest.UsageError(f"--ztfl-data={path}: {exc}") from None
    except Exception as exc:  # torchvision raises URLError/RuntimeError when offline
        raise pytest.UsageError(
            f"--ztfl-data={path}: no MNIST there and the download failed ({exc}); "
            "point --ztfl-data or ZTFL_DATA_DIR at a directory holding MNIST/raw/*.gz"
        ) from None
