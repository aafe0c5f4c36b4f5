"""The matrix as tests: the plugin adds this file to the run when ``--ztfl-matrix`` is given.

One test per cell (``test_fl[SEC3-NET2-noniid-s0]``). A cell whose proofs of enforcement
failed, or whose run did not succeed, fails with the reason; otherwise its server-measured
round durations become the benchmark's samples and its SLO gates decide the outcome.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pytest_ztfl.gates import Verdict


class ZtflInconclusiveWarning(UserWarning):
    """An SLO's point estimate is beyond its limit but the confidence interval straddles it."""


class ZtflUnsuccessfulRunWarning(UserWarning):
    """The run missed the seed study's success definition, but no SLO gate failed."""


def _noop() -> None:
    return None


def test_fl(ztfl_cell: Any, ztfl_session: Any, ztfl_result: dict[str, Any], benchmark: Any) -> None:
    row = ztfl_result
    if row.get("error"):
        pytest.fail(f"{ztfl_cell.id}: {row['error']}", pytrace=False)
    # completed rounds, the sample the SLO gates and the report use
    durations = [r["duration"] for r in row["metrics"]["rounds"] if r["ok"]]
    benchmark.extra_info.update(row["extra_info"])
    if durations:
        rounds = ztfl_session.clock_for(ztfl_cell).load(durations)
        benchmark.pedantic(_noop, rounds=rounds, iterations=1)
    verdicts = ztfl_session.gates(ztfl_cell, row)
    for v in verdicts:
        if v.verdict is Verdict.INCONCLUSIVE:
            warnings.warn(
                ZtflInconclusiveWarning(f"{ztfl_cell.id}: inconclusive: {v.message}"), stacklevel=1
            )
    failed = [v.message for v in verdicts if v.verdict is Verdict.FAIL]
    if not row["success"] and not failed:
        # The seed study's success verdict is recorded (row, report); the test's outcome is the
        # SLO gates' (a 1-in-50 failed round is within a 2% SLO, for instance).
        warnings.warn(
            ZtflUnsuccessfulRunWarning(
                f"{ztfl_cell.id}: run not successful by the seed study's definition "
                f"({row['success_reason']}); no SLO gate failed"
            ),
            stacklevel=1,
        )
    if failed:
        pytest.fail(f"{ztfl_cell.id}: SLO violated:\n  " + "\n  ".join(failed), pytrace=False)
