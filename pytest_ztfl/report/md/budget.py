"""report.md's *Where the run's time went*: the run window split into the blocks' phases
(``design.phases``, the block runner's wall time per phase) and the time between blocks, and
how much of it was measured rounds."""

from __future__ import annotations

from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.fmt import table
from pytest_ztfl.report.md.common import source

# pytest_ztfl.runner.run_block's laps, in order, and what each covers
PHASES = (
    ("deploy", "objects applied, pods started, overlays (policy, emulation, TLS) in place"),
    ("prove", "every arm's proofs of enforcement, at once"),
    ("calibrated", "until the profile's calibration, run while the pods started and were "
     "proven, was done (the profile's first block)"),
    ("start", "the FL runs started"),
    ("joined", "until every client joined and round 1 could be released"),
    ("rounds", "the interleaved rounds, with the holds and evaluations between them"),
    ("finish", "the runs ended, their results read"),
    ("collect", "logs, events and pods' resources gathered"),
    ("cleanup", "namespaces, pods and overlays removed"),
)


def budget(a: Analysis) -> list[str]:
    runs = a.loaded.runs
    by_run: dict[str, dict[str, float]] = {}
    for r in runs:
        if r.block_run is not None and r.phases:
            by_run.setdefault(r.block_run, r.phases)
    starts = [r.started_wall for r in runs if r.started_wall is not None]
    ends = [r.finished_wall for r in runs if r.finished_wall is not None]
    if not by_run or not starts or not ends:
        return ["Not recorded: no row carries its block run's phases (`design.phases`)."]
    window = max(ends) - min(starts)
    totals = {name: sum(p.get(name, 0.0) for p in by_run.values()) for name, _ in PHASES}
    in_blocks = sum(totals.values())
    # rows of runs that calibrated a profile aside, while its first block's pods started
    aside = any("calibrated" in p for p in by_run.values())
    measured = sum(rd.duration for r in runs for rd in r.rounds if rd.ok)
    overlapped = in_blocks > window * 1.001  # --ztfl-parallel: blocks ran at once

    def share(seconds: float) -> str:
        return "-" if overlapped or window <= 0 else f"{100 * seconds / window:.1f}%"

    rows = [(f"{name}", what, f"{totals[name]:.1f}", share(totals[name]))
            for name, what in PHASES]
    rows.append(("of which measured rounds", "sum of the completed rounds' durations "
                 "(round_start to round_end, every arm)", f"{measured:.1f}", share(measured)))
    if not overlapped:
        rows.append(("between blocks", "the session's own work: storing rows, the next "
                     "block's plan" + ("" if aside else ", calibrating a profile first used "
                                       "there"),
                     f"{window - in_blocks:.1f}", share(window - in_blocks)))
    rows.append(("run window", "the first block's start to the last row stored",
                 f"{window:.1f}", share(window)))
    head = (
        f"Source: `design.phases` and `design.block_run` of {source(a)} (one set per block "
        f"run: {len(by_run)}), the rows' `started_wall`/`finished_wall` and completed rounds. "
        "Before the window, outside every row: pytest's start-up and the cluster's creation"
        + ("" if aside else " and the first profile's calibration")
        + " (the whole-process wall time is the terminal's)."
    )
    if overlapped:
        head += (" The blocks overlapped (cells measured at once): their phases add up to "
                 "more than the window, so no shares are given.")
    return [head, "", *table(("phase", "what", "seconds", "of the run window"), rows)]
