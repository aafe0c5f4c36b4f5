"""Shared fixtures of the reliability tests: the fl_app test helpers on the import path, one
local cluster for every fault scenario, and :func:`run_fault`, which measures a cell through
``runner.run_cell`` and returns what the fault scenario tests assert on.

The classes are the row's (the taxonomy labels them blind, from evidence; each run is recorded
for the session's confusion matrix, tests/taxonomy_record.py); the injector's actions come
from the row (``overlays.fault.actions``); the server's whole log is kept by a thin cluster
wrapper as the runner reads it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fl_app"))  # fl_testlib, test_server_protocol helpers
sys.path.insert(0, str(Path(__file__).parent))

import taxonomy_record  # noqa: E402
from reliability_support import FaultRun, LogTap  # noqa: E402


@pytest.fixture(scope="session")
def ztfl_backend(data_dir: Path) -> Iterator[Any]:
    from pytest_ztfl import backends

    backend = backends.create("local", data_dir=str(data_dir))
    try:
        yield backend
    finally:
        backend.cluster.teardown()


@pytest.fixture
def run_fault(ztfl_backend: Any) -> Any:
    from fl_app.events import parse_events
    from pytest_ztfl import faults, runner
    from pytest_ztfl.matrix import Cell


    def run(cell: Cell) -> FaultRun:
        fault = faults.get(cell.fault)
        assert fault is not None
        assert fault.unsupported(cell) is None, fault.unsupported(cell)
        tap = LogTap(ztfl_backend.cluster)
        ns = runner.namespace_for(cell)
        row, raw = runner.run_cell(replace(ztfl_backend, cluster=tap), cell)
        acts = [faults.Action(**a) for a in row["overlays"]["fault"]["actions"]]
        taxonomy_record.record(row, fault.name, fault.expect)
        log = parse_events(raw.decode().splitlines(), ns)
        return FaultRun(row, log.events, row["failures_by_class"], acts, tap.server_log)

    return run
