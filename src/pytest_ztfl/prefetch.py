"""Cells measured ahead of their tests, up to N at once (``--ztfl-parallel N``).

pytest runs the matrix's tests one after another. With N > 1 the session hands the cells it
will need, in test order, to a pool of N threads; each cell runs in its own namespace, and
each test waits for its own cell's row. Test order, outcomes, benchmark records and the SLO
gates are exactly those of a sequential run; only the measuring overlaps. Threads suffice:
a cell's harness side mostly waits on the cluster (readiness, logs, the run's end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pytest_ztfl.matrix import Cell

Row = dict[str, Any]


class Prefetcher:
    def __init__(self, workers: int, measure: Callable[[Cell], Row]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ztfl-cell")
        self._measure = measure
        self._futures: dict[str, Future[Row]] = {}

    def submit(self, cells: Iterable[Cell]) -> None:
        """Queue cells in this order (a cell already queued keeps its place)."""
        for cell in cells:
            if cell.id not in self._futures:
                self._futures[cell.id] = self._pool.submit(self._measure, cell)

    def has(self, cell: Cell) -> bool:
        return cell.id in self._futures

    def result(self, cell: Cell) -> Row:
        """The cell's row once measured; its measuring error, if it raised, is raised here."""
        return self._futures[cell.id].result()

    def close(self) -> None:
        """Drop cells not started yet; wait for running ones (they delete their namespaces
        and store their rows, so an interrupted matrix can be resumed)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
