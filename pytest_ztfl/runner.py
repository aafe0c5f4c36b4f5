"""Run cells on a cluster: one alone (``run_cell``), or a block of them with their rounds
interleaved (``run_block``), each cell's phases in pytest_ztfl.arm.

In a block every arm is deployed and proved first; then round r of every arm runs before round
r+1 of any, one round at a time, in the block's recorded random order for r
(pytest_ztfl.design). The schedule releases a round only when the previous one, its evaluation
and the next hold are done, so no two rounds overlap and every arm's round r sees the machine
within seconds of the others'. Each arm's cgroups are read just before and after its round, so
CPU is charged to the round that used it. Namespaces are deleted afterwards, whatever happened.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from k8s_fixtures.cluster import ClusterError
from pytest_ztfl import patterns, rows
from pytest_ztfl.arm import Arm, deploy_and_prove
from pytest_ztfl.backends import Backend
from pytest_ztfl.cellplan import READY_TIMEOUT, namespace_for
from pytest_ztfl.design import Block
from pytest_ztfl.live import BLOCK, Progress, silent
from pytest_ztfl.matrix import Cell
from pytest_ztfl.warning_types import ZtflPolicyWarning

__all__ = ["ZtflPolicyWarning", "deploy_and_prove", "namespace_for", "run_block", "run_cell"]

Row = dict[str, Any]


def run_cell(
    backend: Backend,
    cell: Cell,
    progress: Progress = silent,
    design: dict[str, Any] | None = None,
    context: rows.Context | None = None,
) -> tuple[Row, bytes]:
    """Measure one cell on its own (its rounds back to back); returns its row and the
    server's raw event log."""
    arm = Arm(backend, cell, progress, context=context)
    try:
        arm.deploy()
        arm.prove()
        if arm.ok:
            arm.start()
            arm.round1_done(arm.run_timeout)
            arm.finish()
        arm.collect()
    except ClusterError as exc:
        arm.error = f"cluster: {exc}"
    finally:
        arm.cleanup()
    arm.design = dict(design or {})
    return arm.row()


def _tagged(progress: Progress, cell: Cell) -> Progress:
    """A block's arms interleave: each live line names its cell."""

    def out(line: str, level: int = BLOCK) -> None:
        progress(line if line.startswith(cell.id) else f"{cell.id}: {line.strip()}", level)

    return out


def run_block(
    backend: Backend,
    block: Block,
    progress: Progress = silent,
    context: rows.Context | None = None,
    calibrated: Callable[[], rows.Context] | None = None,
    after_rounds: Callable[[], None] | None = None,
    before_rounds: Callable[[], None] | None = None,
) -> list[tuple[Row, bytes]]:
    """Measure a block's arms with their rounds interleaved (``block.mode == "round"``) or
    one after another in the block's order (``"cell"``); rows in the block's arm order.

    ``calibrated``, when given, waits for what runs aside while the pods start and are
    proven (the profile's calibration) and returns the rows' context; it is called before
    any FL run starts, so nothing aside overlaps a measured round. ``before_rounds`` is called
    once every arm's clients joined, just before round 1 (a round-mode block only; e.g. to
    switch a profiler on), ``after_rounds`` once the last round ended (e.g. to start the next
    block's calibration aside)."""
    run_id = uuid.uuid4().hex[:12]
    patterns.warm(backend, list(block.arms))
    if block.mode == "cell":
        if before_rounds is not None:
            raise ValueError(f"run_block: before_rounds needs a round-mode block ({block.key})")
        context = calibrated() if calibrated is not None else context
        # Arms one after another did not meet the same moments: each its own block run, so
        # no comparison pairs their rounds (analysis.compare); ``block`` still groups them.
        return [
            run_cell(
                backend,
                c,
                progress,
                {**block.to_dict(c), "block_run": f"{run_id}.{i}"},
                context,
            )
            for i, c in enumerate(block.arms)
        ]
    arms = [
        Arm(backend, c, _tagged(progress, c), hold_rounds=True, context=context)
        for c in block.arms
    ]
    by_id = {a.cell.id: a for a in arms}
    order: list[list[str]] = []
    started: list[Arm] = []
    phases: dict[str, float] = {}  # the block's wall time per phase, seconds (rows' design)
    mark = [time.monotonic()]

    def lap(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(now - mark[0], 3)
        mark[0] = now

    def guarded(a: Arm, step: Callable[[], None]) -> None:
        try:
            step()
        except ClusterError as exc:
            a.error = f"cluster: {exc}"

    try:
        for a in arms:  # every arm's pods start at once: their start-up overlaps
            guarded(a, a.deploy)
        lap("deploy")
        # each arm's proofs in its own thread: they wait on probes in their own namespaces
        _together(guarded, "prove", [a for a in arms if a.ok])
        lap("prove")
        if calibrated is not None:
            ctx = calibrated()
            for a in arms:
                a.context = ctx
            lap("calibrated")
        for a in arms:  # here, not in threads: a capture's tcpdump dies with its thread
            if a.ok:
                guarded(a, a.start)
        started += [a for a in arms if a.follower is not None]
        lap("start")
        live = [a for a in started if a.ok]
        # Round 1 of any arm only once every arm is idle: all clients joined, start-up done.
        for a in live:
            assert a.follower is not None
            a.follower.event("round_hold", 1).wait(READY_TIMEOUT)
        lap("joined")
        if before_rounds is not None:
            before_rounds()
        rounds = block.arms[0].workload.rounds
        deadline = block.arms[0].workload.round_deadline
        for r in range(1, rounds + 1):
            ran = []
            for position, cell in enumerate(block.round_order(r)):
                a = by_id[cell.id]
                if a not in live:
                    continue
                try:
                    went = _round(a, r, rounds, position, deadline)
                except ClusterError as exc:
                    a.error, went = f"cluster: {exc}", False
                if not went:
                    live.remove(a)  # its run ended (or died): finish() says how
                    continue
                ran.append(a.cell.id)
            order.append(ran)
        lap("rounds")
        if after_rounds is not None:
            after_rounds()
        for a in started:
            guarded(a, a.finish)
        lap("finish")
        for a in arms:
            guarded(a, a.collect)
        lap("collect")
    finally:
        _cleanup(arms)
        lap("cleanup")
    out = []
    for a in arms:
        a.design = {**block.to_dict(a.cell), "block_run": run_id, "round_order": order,
                    "phases": phases}
        out.append(a.row())
    return out


def _together(guarded: Callable[[Arm, Callable[[], None]], None], step: str,
              arms: list[Arm]) -> None:
    """``guarded(a, a.<step>)`` for every arm at once; returns when all are done (an error
    other than the guarded one is raised, as it would have been one after another)."""
    if not arms:
        return
    with ThreadPoolExecutor(max_workers=len(arms), thread_name_prefix=f"ztfl-{step}") as ex:
        for f in [ex.submit(guarded, a, getattr(a, step)) for a in arms]:
            f.result()


def _cleanup(arms: list[Arm]) -> None:
    """Every arm's namespace goes, even when one arm's clean-up fails (then raise)."""
    errors = []
    for a in arms:
        try:
            a.cleanup()
        except Exception as exc:  # keep cleaning the others; reported together
            errors.append(f"{a.cell.id}: {exc!r}")
    if errors:
        raise ClusterError("clean-up failed: " + "; ".join(errors))


def _round(a: Arm, r: int, rounds: int, position: int, deadline: float) -> bool:
    """Run arm ``a``'s round ``r``: wait for its hold, sample, release, wait for its end and
    for the server to be idle again (its evaluation done, the next hold or the run's end),
    sample. False when the run ended before the round could run in full."""
    f = a.follower
    assert f is not None
    f.event("round_hold", r).wait(READY_TIMEOUT)
    if not f.saw("round_hold", r):
        return False
    before = a.sample()
    a.release(r)
    f.event("round_end", r).wait(deadline + READY_TIMEOUT)
    if not f.saw("round_end", r):
        return False
    nxt = ("round_hold", r + 1) if r < rounds else ("run_end", None)
    f.event(*nxt).wait(READY_TIMEOUT)
    a.record_round(r, position, before, a.sample())
    if r == rounds:
        # the run's processes end now (a torch process's exit costs CPU, charged to no
        # round): not during another arm's round
        a.wait_exited(READY_TIMEOUT)
    if r == 1:
        a.round1_done(0.0)
    return f.saw(*nxt)
