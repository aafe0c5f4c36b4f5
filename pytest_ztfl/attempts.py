"""Attempts: a block measured again when an arm failed for a harness reason, every attempt
kept and counted (the seed study reports attempts against completions, its Tables I and II).

A harness reason is the platform failing the harness (``cluster: ...``: a pod that never got
ready, an API call that failed), never what the run found: a failed proof of enforcement, a
fault scenario's effect, failed rounds or an SLO are results, and measuring them again until
they pass would hide them. The whole block is measured again, not the failed arm alone: its
arms' rounds pair only within one block run. An exception out of the harness is a bug, not a
harness reason: it is raised, never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Row = dict[str, Any]
Result = tuple[Row, bytes]  # a row and the server's raw event log
HARNESS = ("cluster:",)


def harness_failure(row: Row) -> str | None:
    """The row's error when it is a harness reason to measure again, else None."""
    error = row.get("error")
    if not isinstance(error, str) or (row.get("cell") or {}).get("fault"):
        return None
    return error if error.startswith(HARNESS) else None


def summary(row: Row, attempt: int) -> dict[str, Any]:
    """What the rows keep of one attempt of a cell."""
    run = (row.get("design") or {}).get("block_run")
    return {"attempt": attempt, "block_run": run, "error": row.get("error")}


class Store(Protocol):
    """Where attempts go (pytest_ztfl.results.ResultStore)."""

    def save(self, row: Row, events: bytes) -> None: ...

    def save_attempt(self, row: Row, events: bytes, attempt: int) -> None: ...


def again(block: str, attempt: int, why: Sequence[str]) -> str:
    """The live line of an attempt that will be repeated."""
    return (f"block {block}: attempt {attempt} failed for a harness reason "
            f"({'; '.join(why)}); measuring the block again")


@dataclass
class Attempts:
    """A block's attempts: the results of the one that counts and every earlier one."""

    results: list[Result]
    failed: list[list[Result]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.failed) + 1

    def keep(self, store: Store) -> list[Row]:
        """Store the earlier attempts apart and the one that counts as the cells' rows, each
        row with its cell's history (``attempts``); returns those rows."""
        for n, earlier in enumerate(self.failed, start=1):
            for row, events in earlier:
                store.save_attempt(row, events, n)
        for row, events in self.results:
            row["attempts"] = self.history(row["cell"]["id"])
            store.save(row, events)
        return [row for row, _ in self.results]

    def history(self, cell_id: str) -> list[dict[str, Any]]:
        """The cell's attempts, oldest first, the one that counts last."""
        out = []
        for n, results in enumerate([*self.failed, self.results], start=1):
            out += [summary(row, n) for row, _ in results if row["cell"]["id"] == cell_id]
        return out


def measure(
    run: Callable[[], Sequence[Result]],
    retries: int,
    on_retry: Callable[[int, list[str]], None] = lambda attempt, why: None,
) -> Attempts:
    """Run the block; while an arm failed for a harness reason and ``retries`` allow, run it
    again. ``on_retry(attempt, reasons)`` is told of each attempt that will be repeated."""
    failed: list[list[Result]] = []
    while True:
        results = list(run())
        why = [f"{row['cell']['id']}: {e}" for row, _ in results if (e := harness_failure(row))]
        if not why or len(failed) >= retries:
            return Attempts(results, failed)
        on_retry(len(failed) + 1, why)
        failed.append(results)
