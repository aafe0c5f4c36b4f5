"""Blocks measured ahead of their tests, up to N at once (``--ztfl-parallel N``).

pytest runs the matrix's tests one after another. With N > 1 the session hands the blocks it
will need, in run order, to a pool of N threads; each block's cells run in their own
namespaces, and each test waits for its own block. Test order, outcomes, benchmark records and
the SLO gates are exactly those of a sequential run; only the measuring of blocks overlaps (a
block's own rounds stay interleaved one at a time). Threads suffice: a block's harness side
mostly waits on the cluster (readiness, logs, the runs' end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from pytest_ztfl.design import Block


class Prefetcher:
    def __init__(self, workers: int, measure: Callable[[Block], None]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ztfl-block")
        self._measure = measure
        self._futures: dict[str, Future[None]] = {}

    def submit(self, blocks: Iterable[Block]) -> None:
        """Queue blocks in this order (a block already queued keeps its place)."""
        for block in blocks:
            if block.key not in self._futures:
                self._futures[block.key] = self._pool.submit(self._measure, block)

    def has(self, block: Block) -> bool:
        return block.key in self._futures

    def result(self, block: Block) -> None:
        """Wait for the block; its measuring error, if it raised, is raised here."""
        self._futures[block.key].result()

    def close(self) -> None:
        """Drop blocks not started yet; wait for running ones (they delete their namespaces
        and store their rows, so an interrupted matrix can be resumed)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
