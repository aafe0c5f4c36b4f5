"""Shared fixtures of the reliability tests: the fl_app test helpers on the import path, one
local cluster for every fault scenario, and :func:`run_fault`, which measures a cell through
``runner.run_cell`` and returns what the fault scenario tests assert on.

Until the runner wires the fault hooks itself (``faults.render``/``faults.ready_names`` in
``deploy_and_prove``, ``faults.observe`` in ``run_cell``: the change requested in issue 8's
report), :func:`run_fault` stands in for exactly that change: it swaps ``deploy_and_prove`` for
the requested version and computes the attribution from the server's whole log, which it reads
through a thin cluster wrapper when the runner reads it. Once the runner has the change, the
wrapper detects it and does neither.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fl_app"))  # fl_testlib, test_server_protocol helpers
sys.path.insert(0, str(Path(__file__).parent))

from reliability_support import FaultRun, LogTap, runner_wired  # noqa: E402


@pytest.fixture(scope="session")
def ztfl_cluster(data_dir: Path) -> Iterator[tuple[Any, str, Any]]:
    from pytest_ztfl import backends

    cluster, note, platform = backends.create("local", data_dir=str(data_dir))
    try:
        yield cluster, note, platform
    finally:
        cluster.teardown()


@pytest.fixture
def run_fault(
    ztfl_cluster: tuple[Any, str, Any], monkeypatch: pytest.MonkeyPatch
) -> Any:
    from fl_app.events import parse_events
    from pytest_ztfl import faults, runner
    from pytest_ztfl.matrix import Cell

    cluster, note, platform = ztfl_cluster

    def run(cell: Cell) -> FaultRun:
        fault = faults.get(cell.fault)
        assert fault is not None
        assert fault.unsupported(cell) is None, fault.unsupported(cell)
        wired = runner_wired()
        if not wired:
            orig = runner.deploy_and_prove

            def deploy_and_prove(cl: Any, run: Any, plan: Any, ca: Any, probe_objs: Any) -> Any:
                # The requested runner change, verbatim (see the module docstring).
                from k8s_fixtures import proofs as pf

                objs = [*faults.render(fault, run, ca), *probe_objs]
                cl.apply(objs)
                cl.wait_ready(run.namespace, names=faults.ready_names(fault, objs),
                              timeout=runner.READY_TIMEOUT)
                return pf.run_proofs(cl, plan)

            assert orig is not None
            monkeypatch.setattr(runner, "deploy_and_prove", deploy_and_prove)
        tap = LogTap(cluster)
        ns = runner.namespace_for(cell)
        faults.forget(ns)
        row, raw = runner.run_cell(tap, cell, platform, note)
        acts = faults.actions(ns)
        log = parse_events(raw.decode().splitlines(), ns)
        frun = fault.prepare(runner.fl_run(cell, platform))
        att = faults.observe(fault, frun, log, row["pods"], tap.server_log)
        faults.forget(ns)
        computed = faults.classify(log, att)
        if row.get("error", "") and str(row["error"]).startswith("netem:"):
            computed = dict(row["failures_by_class"])  # the runner's own netem override
        classes = row["failures_by_class"] if wired else computed
        return FaultRun(row, log.events, classes, att, acts, tap.server_log)

    return run
