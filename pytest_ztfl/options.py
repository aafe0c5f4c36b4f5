"""The ``ztfl`` option group: its definition, and the validated settings a run works from.

Every option is also an ini setting (``ztfl_matrix = quick`` in pytest.ini / pyproject's
``[tool.pytest.ini_options]``); the command line wins. Invalid values raise
``pytest.UsageError`` before any cluster is created.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k8s_fixtures.netem.profiles import Profile
from pytest_ztfl import matrix as mx

BACKENDS = ("auto", "local", "kind", "kube")

# name, help, kind ("str" | "bool"), default
OPTIONS: tuple[tuple[str, str, str, str | None], ...] = (
    ("matrix", "run a matrix: smoke|quick|paper|full|hetero-smoke or a matrix YAML file", "str",
     None),
    ("backend", "where pods run: auto|local|kind|kube (default auto)", "str", "auto"),
    ("seeds", "override the matrix's seeds, e.g. 0-4 or 0,2", "str", None),
    ("rounds", "override the number of FL rounds", "str", None),
    ("clients", "override the number of FL clients", "str", None),
    ("model", "override the model: small|paper", "str", None),
    (
        "mtls",
        "mTLS mode for SEC2/SEC3: sidecar|native|mesh (default: the matrix's; mesh: Linkerd, "
        "kind/kube only)",
        "str",
        None,
    ),
    (
        "faults",
        "fault scenarios as an extra axis, e.g. none,client-kill,mtls-expired "
        "(pytest_ztfl/faults/)",
        "str",
        None,
    ),
    (
        "net-profiles",
        "YAML file with network profiles overriding/adding to the shipped ones",
        "str",
        None,
    ),
    (
        "data",
        "MNIST directory (default $ZTFL_DATA_DIR, else ~/.cache/ztfl/mnist; "
        "downloaded when absent and online)",
        "str",
        None,
    ),
    (
        "image",
        "container image of the workload on kind/kube (default ghcr.io/ztfl/fl-app:0.1.0)",
        "str",
        "ghcr.io/ztfl/fl-app:0.1.0",
    ),
    (
        "kube-context",
        "kubeconfig context for --ztfl-backend=kube (auto picks kube when given)",
        "str",
        None,
    ),
    (
        "parallel",
        "run up to N cells at once, each in its own namespace (default 1). For clusters with "
        "room for them: on one machine parallel cells share its CPUs, and rows record N",
        "str",
        "1",
    ),
    (
        "retries",
        "measure a block again, up to N times, when an arm failed for a harness reason (the "
        "platform: 'cluster: ...'; never a failed proof, a fault or an SLO); every attempt is "
        "kept in <out>/attempts/ and listed in the rows' attempts (default 0)",
        "str",
        "0",
    ),
    (
        "checks",
        "the instrument's own check arms in every block: aa (the SEC0 arm twice: its ratio "
        "must stay within noise) and/or delay<MS>ms (SEC0 with MS ms added to every round: "
        "must be found), e.g. aa,delay10ms; none by default",
        "str",
        None,
    ),
    (
        "interleave",
        "round (default): a block's arms (same NET, data, seed) run together, their rounds "
        "interleaved in a random order per round; cell: one after another in a random order",
        "str",
        "round",
    ),
    (
        "order-seed",
        "seed of the random orders of blocks, arms and rounds (default: a fresh one, recorded "
        "in <out>/design.json and every row)",
        "str",
        None,
    ),
    ("out", "results directory (default ztfl-out)", "str", "ztfl-out"),
    ("report", "write report.md and figures to this directory after the run", "str", None),
    ("resume", "continue a matrix in --ztfl-out where it stopped", "bool", None),
    (
        "keep-cluster",
        "leave the cluster up after the run (inspect with `ztfl cluster status`)",
        "bool",
        None,
    ),
    ("slo-failure-rate", "SLO: maximum per-round failure rate (default 0.02)", "str", "0.02"),
    (
        "slo-overhead-median",
        "SLO: maximum median round-duration ratio vs SEC0, per cell and pooled per group "
        "(default 1.10)",
        "str",
        "1.10",
    ),
    (
        "slo-overhead-tail",
        "SLO: maximum p95 round-duration ratio vs SEC0, pooled per group over data and seeds "
        "(default 1.25)",
        "str",
        "1.25",
    ),
    (
        "baseline",
        "a stored results directory (an earlier --ztfl-out): every cell is also gated against "
        "the same cell there (median round duration, --ztfl-slo-overhead-median)",
        "str",
        None,
    ),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("ztfl", "Zero Trust federated learning benchmark")
    for name, help_text, kind, _default in OPTIONS:
        dest = "ztfl_" + name.replace("-", "_")
        if kind == "bool":
            group.addoption(
                f"--ztfl-{name}", action="store_true", default=None, dest=dest, help=help_text
            )
            parser.addini(dest, help_text, type="bool", default=False)
        else:
            group.addoption(f"--ztfl-{name}", default=None, dest=dest, help=help_text)
            parser.addini(dest, help_text, default=None)


def _get(config: pytest.Config, name: str) -> Any:
    dest = "ztfl_" + name.replace("-", "_")
    value = config.getoption(dest)
    if value is None:
        value = config.getini(dest)
    if value in (None, "", []):
        value = next(d for n, _h, _k, d in OPTIONS if n == name)
    return value


def _number(config: pytest.Config, name: str, kind: type, low: float, high: float) -> Any:
    raw = _get(config, name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise pytest.UsageError(
            f"--ztfl-{name}={raw}: expected {'an integer' if kind is int else 'a number'}"
        ) from None
    if not low <= value <= high:
        raise pytest.UsageError(f"--ztfl-{name}={raw}: must be between {low:g} and {high:g}")
    return value


def _choice(config: pytest.Config, name: str, allowed: tuple[str, ...]) -> str:
    value = str(_get(config, name))
    if value not in allowed:
        raise pytest.UsageError(f"--ztfl-{name}={value}: expected one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Settings:
    matrix: mx.Matrix
    backend: str
    image: str
    kube_context: str | None
    out: Path
    report: Path | None
    data: str
    net_profiles: Path | None
    resume: bool
    keep_cluster: bool
    parallel: int
    interleave: str
    order_seed: int | None
    slo_failure_rate: float
    slo_overhead_median: float
    slo_overhead_tail: float
    baseline_dir: Path | None = None
    retries: int = 0
    # parsed once per session (a new dict per Settings: no shared mutable default)
    profiles: Mapping[str, Profile] = field(default_factory=dict)


def settings(config: pytest.Config, profiles: Mapping[str, Profile]) -> Settings | None:
    """Validated settings, or None when no matrix was asked for."""
    spec = _get(config, "matrix")
    if spec is None:
        return None
    backend = _get(config, "backend")
    if backend not in BACKENDS:
        raise pytest.UsageError(f"--ztfl-backend={backend}: expected one of {', '.join(BACKENDS)}")
    try:
        m = mx.load(str(spec), sorted(profiles))
        seeds = _get(config, "seeds")
        m = mx.override(
            m,
            seeds=mx.parse_seeds(str(seeds)) if seeds is not None else None,
            rounds=_number(config, "rounds", int, 1, 100_000),
            clients=_number(config, "clients", int, 1, 1000),
            model=_get(config, "model"),
            mtls=_get(config, "mtls"),
            faults=_get(config, "faults"),
            checks=_get(config, "checks"),
        )
    except mx.MatrixError as exc:
        raise pytest.UsageError(str(exc)) from None
    net_profiles = _get(config, "net-profiles")
    if net_profiles is not None and not Path(net_profiles).is_file():
        raise pytest.UsageError(f"--ztfl-net-profiles={net_profiles}: no such file")
    failure_rate = _number(config, "slo-failure-rate", float, 0.0, 1.0)
    if failure_rate >= 1.0:  # the gate needs a limit below 1 (pytest_ztfl.analysis.gates)
        raise pytest.UsageError(
            f"--ztfl-slo-failure-rate={_get(config, 'slo-failure-rate')}: must be below 1"
        )
    report = _get(config, "report")
    data = (
        _get(config, "data")
        or os.environ.get("ZTFL_DATA_DIR")
        or str(Path.home() / ".cache" / "ztfl" / "mnist")
    )
    return Settings(
        matrix=m,
        backend=str(backend),
        image=str(_get(config, "image")),
        kube_context=_get(config, "kube-context"),
        out=Path(_get(config, "out")),
        report=Path(report) if report else None,
        data=str(data),
        net_profiles=Path(net_profiles) if net_profiles else None,
        profiles=dict(profiles),
        resume=bool(_get(config, "resume")),
        keep_cluster=bool(_get(config, "keep-cluster")),
        parallel=_number(config, "parallel", int, 1, 256),
        interleave=_choice(config, "interleave", ("round", "cell")),
        order_seed=_number(config, "order-seed", int, 0, 2**31 - 1),
        slo_failure_rate=failure_rate,
        slo_overhead_median=_number(config, "slo-overhead-median", float, 1.0, 1000.0),
        slo_overhead_tail=_number(config, "slo-overhead-tail", float, 1.0, 1000.0),
        baseline_dir=_baseline(config),
        retries=_number(config, "retries", int, 0, 10),
    )


def _baseline(config: pytest.Config) -> Path | None:
    """``--ztfl-baseline``: a directory with a stored run's cells/ (checked now, read later)."""
    raw = _get(config, "baseline")
    if raw is None:
        return None
    path = Path(raw)
    if not (path / "cells").is_dir():
        raise pytest.UsageError(
            f"--ztfl-baseline={raw}: no stored run there (expected {path / 'cells'}/*.json, "
            "an earlier --ztfl-out)"
        )
    return path
