"""The matrix as tests: the plugin adds this file to the run when ``--ztfl-matrix`` is given.

One test per cell (``test_fl[SEC3-NET2-noniid-s0]``), in the design's run order. A cell whose
proofs of enforcement failed, or whose run did not succeed, fails with the reason; otherwise
its server-measured round durations become the benchmark's samples and its SLO gates decide
the outcome. Then one test per pooled comparison (``test_overhead_pooled[SEC3-NET2]``): the
level's overhead over every block of the matrix, median and tail. Check arms (``-aa``,
``-delay<MS>ms``) test the instrument itself, judged at the end, one test per kind
(``test_instrument_checks[delay10ms]``, only in a matrix that has them): what they find is a
warning, not a failure of the system measured.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pytest_ztfl.analysis import compare
from pytest_ztfl.analysis.gates import Verdict
from pytest_ztfl.warning_types import (
    ZtflInconclusiveWarning,
    ZtflInstrumentWarning,
    ZtflUnsuccessfulRunWarning,
)


def _noop() -> None:
    return None


def _judge(verdicts: list[Any], where: str) -> None:
    for v in verdicts:
        if v.verdict is Verdict.INCONCLUSIVE:
            warnings.warn(ZtflInconclusiveWarning(f"{where}: inconclusive: {v.message}"),
                          stacklevel=2)
    failed = [v.message for v in verdicts if v.verdict is Verdict.FAIL]
    if failed:
        pytest.fail(f"{where}: SLO violated:\n  " + "\n  ".join(failed), pytrace=False)


def check_finding(
    cell: Any,
    row: dict[str, Any],
    base: dict[str, Any] | None,
    noise: compare.Noise = compare.NO_NOISE,
) -> str | None:
    """What a check arm found wanting, as one line (None: the instrument passed)."""
    if base is None or not compare.usable(base) or not compare.usable(row):
        return f"{cell.id}: check not judged: its block's SEC0 arm has no usable rounds"
    r = compare.ratio([(row, base)], 0.5, seed=cell.seed, noise=noise)
    shown = f"{r.estimate:.4f}x [{r.ci_low:.4f}, {r.ci_high:.4f}]"
    if cell.check == "aa":
        if r.excludes_one:
            return (
                f"{cell.id}: A/A median round duration ratio {shown} excludes 1: the "
                "instrument saw a difference where there is none (its intervals are too narrow "
                "on this machine now; see the report's instrument checks)"
            )
        return None
    # Judged where a control's cost shows: the participants' path time (the round's duration
    # carries all of training's jitter; a 10 ms effect there is under the MDE on 2 cores).
    if not compare.values(row, "path_seconds") or not compare.values(base, "path_seconds"):
        return f"{cell.id}: check not judged: the rows have no path_seconds"
    p = compare.ratio([(row, base)], 0.5, "path_seconds", seed=cell.seed, noise=noise)
    d = compare.difference([(row, base)], 0.5, "path_seconds", seed=cell.seed, noise=noise)
    if p.ci_low <= 1.0:
        return (
            f"{cell.id}: a known {cell.inject_delay_ms:g} ms per round was not found in the "
            f"participants' path time (ratio {p.estimate:.3f}x [{p.ci_low:.3f}, "
            f"{p.ci_high:.3f}], {d.estimate * 1000:+.1f} ms [{d.ci_low * 1000:+.1f}, "
            f"{d.ci_high * 1000:+.1f}]; round duration {shown}): smaller effects than "
            f"{p.mde:.1%} of the path go unseen here"
        )
    return None


def test_fl(ztfl_cell: Any, ztfl_session: Any, ztfl_result: dict[str, Any], benchmark: Any) -> None:
    row = ztfl_result
    if row.get("error"):
        pytest.fail(f"{ztfl_cell.id}: {row['error']}", pytrace=False)
    fault = (row.get("overlays") or {}).get("fault") or {}
    if fault.get("agrees") is False:
        wrong = [f for f in row.get("failures", []) if f.get("class") != fault["expect"]]
        pytest.fail(
            f"{ztfl_cell.id}: fault {fault.get('name')} must be classified {fault['expect']}; "
            f"the taxonomy (blind to the fault) said {fault['classified']}"
            + (f", e.g. {wrong[0]['event']} of client {wrong[0]['client']}: {wrong[0]['why']}"
               if wrong else ""),
            pytrace=False,
        )
    # completed rounds, the sample the SLO gates and the report use
    durations = [r["duration"] for r in row["metrics"]["rounds"] if r["ok"]]
    benchmark.extra_info.update(row["extra_info"])
    if durations:
        rounds = ztfl_session.clock_for(ztfl_cell).load(durations)
        benchmark.pedantic(_noop, rounds=rounds, iterations=1)
    verdicts = ztfl_session.gates(ztfl_cell, row)
    failed = [v for v in verdicts if v.verdict is Verdict.FAIL]
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
    _judge(verdicts, ztfl_cell.id)


def test_instrument_checks(ztfl_check: str, ztfl_session: Any) -> None:
    """One check kind's arms (``-aa``, ``-delay<MS>ms``), each against its block's SEC0 arm,
    judged once every block has run, with the whole run's instance noise, as the report and
    benchmarks/trust_check.py judge them (judged as each arm ended, a seed's noise was the
    blocks' so far: a verdict the report could contradict). What an arm finds wanting is a
    ZtflInstrumentWarning: the instrument's, not the system's."""
    arms = ztfl_session.check_arms(ztfl_check)
    if not arms:
        pytest.skip(f"{ztfl_check}: no measured check arm (deselected or skipped)")
    noise = ztfl_session.noise()
    for cell, row, base in arms:
        finding = check_finding(cell, row, base, noise)
        if finding is not None:
            warnings.warn(ZtflInstrumentWarning(finding), stacklevel=1)


def test_overhead_pooled(ztfl_group: str, ztfl_session: Any) -> None:
    """A SEC level's overhead at one NET over every block of the matrix (data splits and
    seeds): median and p95 round duration against SEC0, intervals over blocks and rounds."""
    verdicts = ztfl_session.pooled_gates(ztfl_group)
    if not verdicts:
        pytest.skip(f"{ztfl_group}: no measured pair of cells (deselected or skipped)")
    _judge(verdicts, ztfl_group)
