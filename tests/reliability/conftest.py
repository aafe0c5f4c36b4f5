"""Shared fixtures of the reliability tests: the fl_app test helpers on the import path, one
local cluster for every fault scenario, and :func:`run_fault`, which measures a cell through
``runner.run_cell`` and returns what the fault scenario tests assert on.

The classes are the row's (the taxonomy labels them blind, from evidence; each run is recorded
for the session's confusion matrix, tests/taxonomy_record.py); the injector's actions come
from ``faults.actions``; the server's whole log is kept by a thin cluster wrapper as the
runner reads it.
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

import taxonomy_record  # noqa: E402
from reliability_support import FaultRun, LogTap  # noqa: E402


@pytest.fixture(scope="session")
def ztfl_cluster(data_dir: Path) -> Iterator[tuple[Any, str, Any]]:
    from pytest_ztfl import backends

    cluster, note, platform = backends.create("local", data_dir=str(data_dir))
    try:
        yield cluster, note, platform
    finally:
        cluster.teardown()


@pytest.fixture
def run_fault(ztfl_cluster: tuple[Any, str, Any]) -> Any:
    from fl_app.events import parse_events
    from pytest_ztfl import faults, runner
    from pytest_ztfl.matrix import Cell

    cluster, note, platform = ztfl_cluster

    def run(cell: Cell) -> FaultRun:
        fault = faults.get(cell.fault)
        assert fault is not None
        assert fault.unsupported(cell) is None, fault.unsupported(cell)
        tap = LogTap(cluster)
        ns = runner.namespace_for(cell)
        row, raw = runner.run_cell(tap, cell, platform, note)
        acts = faults.actions(ns)
        faults.forget(ns)
        taxonomy_record.record(row, fault.name, fault.expect)
        log = parse_events(raw.decode().splitlines(), ns)
        return FaultRun(row, log.events, row["failures_by_class"], acts, tap.server_log)

    return run
