"""Helpers for the integration tests on the real local backend (a uniquely named module:
``conftest`` is ambiguous across test directories)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import taxonomy_record

from k8s_fixtures import proofs as pf
from pytest_ztfl import cellplan, runner
from pytest_ztfl.backends import Backend, Platform
from pytest_ztfl.matrix import Cell

Row = dict[str, Any]


@dataclass
class Live:
    """The session's local cluster and the cell runs made on it (memoised per cell, so tests
    that look at the same run from different angles pay for it once)."""

    backend: Backend
    results: dict[Cell, tuple[Row, bytes]] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)  # other shared, expensive results

    @property
    def cluster(self) -> Any:  # the local cluster (tests reach its namespaces directly)
        return self.backend.cluster

    @property
    def platform(self) -> Platform:
        return self.backend.platform

    @property
    def note(self) -> str:
        return self.backend.note

    def run(self, cell: Cell) -> tuple[Row, bytes]:
        """``runner.run_cell`` for ``cell``, once per session; live round progress is printed
        (visible with ``-s``)."""
        if cell not in self.results:
            self.results[cell] = runner.run_cell(self.backend, cell, progress=_print)
            row = self.results[cell][0]
            if cell.fault is None and row["error"] is None:
                taxonomy_record.record(row)  # a no-fault run for the confusion matrix
        return self.results[cell]

    def prove_left_off(
        self,
        cell: Cell,
        then: Callable[[pf.ProofPlan], None] | None = None,
        **left_off: Any,
    ) -> list[pf.Proof]:
        """Deploy ``cell``'s run with a control deliberately left off (``left_off`` replaces
        fields of the :class:`~k8s_fixtures.workload.FLRun`, e.g. ``netpol=False``) but run the
        proofs of what the cell claims; ``then`` may probe the live deployment further before
        the namespace is deleted."""
        cp = cellplan.plan_cell(cell, self.platform)
        cp = replace(cp, run=replace(cp.run, **left_off))
        try:
            results = runner.deploy_and_prove(self.cluster, cp)
            if then is not None:
                then(cp.proofs)
            return results
        finally:
            self.cluster.delete(namespace=cp.run.namespace)


def _print(line: str, level: int = 0) -> None:
    print(line)


def events_of(log: bytes, kind: str) -> list[dict[str, Any]]:
    """The events of one type in a server event log (JSONL bytes as run_cell returns it)."""
    out = []
    for line in log.decode().splitlines():
        e = json.loads(line)
        if e["event"] == kind:
            out.append(e)
    return out


def by_name(proofs: list[pf.Proof]) -> dict[str, pf.Proof]:
    return {p.name: p for p in proofs}


def row_proofs(row: Row) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in row["proofs"]}


def explain(proofs: list[pf.Proof]) -> str:
    return "\n".join(
        f"{'PASS' if p.passed else 'FAIL'} {p.name} (expect {p.expect}): {p.detail}"
        for p in proofs
    )


FlRun = Callable[[Cell, Platform], Any]


def fl_run_with(**left_off: Any) -> FlRun:
    """A replacement for ``cellplan.fl_run`` that leaves a control off in the rendered objects
    while the cell (and so the proof plan and the wire judgement) still claims it."""
    original = cellplan.fl_run

    def fl_run(cell: Cell, platform: Platform, hold_rounds: bool = False) -> Any:
        return replace(original(cell, platform, hold_rounds), **left_off)

    return fl_run
