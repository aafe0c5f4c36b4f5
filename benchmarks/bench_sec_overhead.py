"""Benchmark: what each security level costs an FL round on the local backend (issue 4).

Run as root: ``python benchmarks/bench_sec_overhead.py [-n 2] [-R 10] [--json out.json]``.
One local cluster (``ztfl-<hex>``, as a matrix run makes it); for each repeat, every cell
SEC0, SEC1, SEC2-sidecar, SEC2-native, SEC3-sidecar, SEC3-native (NET0, iid, seed 0,
``--clients`` x ``-R`` rounds of the small CNN) runs through ``runner.run_cell``, proofs
included (a cell whose proofs fail is reported, not measured). Cells are interleaved within a
repeat so slow drift of a shared machine spreads over all of them.

Reported per cell: round-1 median and steady-state median round duration (rounds 2..R of all
repeats pooled), and the median ratio vs SEC0 with a 95% bootstrap CI
(``pytest_ztfl.analysis.ratios.overhead_ratio``; rounds of one run are not independent, so read
the CI as indicative). For SEC1/SEC3: the NetworkPolicy overlay's compile and apply time
(nft.SyncReport ``compile_s``/``apply_s``) summed over every sync the cell's objects caused, the
number of syncs, and the largest single sync (the FL policy set compiled for all pods of the run and
applied to every pod whose ruleset changed). Prints n and the machine, with its load average
before and after (these machines are shared: a high load inflates every number).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from k8s_fixtures.netem.calibrate import machine_info
from k8s_fixtures.netpol import nft
from pytest_ztfl import backends, runner
from pytest_ztfl.analysis.ratios import overhead_ratio
from pytest_ztfl.matrix import Cell, Workload

LEVELS: tuple[tuple[str, str | None], ...] = (
    ("SEC0", None),
    ("SEC1", None),
    ("SEC2", "sidecar"),
    ("SEC2", "native"),
    ("SEC3", "sidecar"),
    ("SEC3", "native"),
)


@dataclass
class CellResult:
    cell: Cell
    durations: list[list[float]] = field(default_factory=list)  # per repeat, per round
    errors: list[str] = field(default_factory=list)
    syncs: list[list[nft.SyncReport]] = field(default_factory=list)  # per repeat
    wall_s: list[float] = field(default_factory=list)

    @property
    def first(self) -> list[float]:
        return [d[0] for d in self.durations if d]

    @property
    def steady(self) -> list[float]:
        return [x for d in self.durations for x in d[1:]]


class SyncRecorder:
    """Records every NetworkPolicy overlay sync (wraps ``nft.Enforcer.sync``)."""

    def __init__(self) -> None:
        self.reports: list[nft.SyncReport] = []
        self._orig = nft.Enforcer.sync

    def __enter__(self) -> SyncRecorder:
        orig = self._orig
        reports = self.reports

        def sync(enforcer: nft.Enforcer, cluster: Any) -> nft.SyncReport:
            r = orig(enforcer, cluster)
            reports.append(r)
            return r

        nft.Enforcer.sync = sync  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        nft.Enforcer.sync = self._orig  # type: ignore[method-assign]

    def take(self) -> list[nft.SyncReport]:
        out, self.reports[:] = list(self.reports), []
        return out


def cells(clients: int, rounds: int, model: str) -> list[Cell]:
    wl = Workload(clients=clients, rounds=rounds, model=model, eval_every=rounds)
    return [
        Cell(sec, "NET0", "iid", 0, wl, mtls=mode, show_mtls=mode is not None)
        for sec, mode in LEVELS
    ]


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def report(results: list[CellResult], n: int, rounds: int, machine: dict[str, Any]) -> str:
    base = results[0]
    lines = [
        f"machine: {machine['host']} {machine['cpu']} ({machine['cores']} cores), kernel "
        f"{machine['kernel']}, load avg before {machine['load_before']}, after "
        f"{machine['load_after']}",
        f"n = {n} repeats per cell, {base.cell.workload.clients} clients x {rounds} rounds, "
        f"model {base.cell.workload.model}; steady = rounds 2..{rounds} pooled over repeats",
        "",
        f"{'cell':<26} {'ok':>4} {'round1 s':>9} {'steady s':>9} {'ratio vs SEC0 [95% CI]':>27}"
        f" {'syncs':>6} {'compile ms':>11} {'apply ms':>9} {'max sync ms':>16}",
    ]
    for r in results:
        ok = f"{len(r.durations)}/{len(r.durations) + len(r.errors)}"
        ratio = "-"
        if r is not base and r.steady and base.steady:
            rc = overhead_ratio(r.steady, base.steady, 0.5)
            ratio = f"{rc.estimate:.3f} [{rc.ci_low:.3f}, {rc.ci_high:.3f}]"
        elif r is base:
            ratio = "1"
        syncs = [s for rep in r.syncs for s in rep]
        per_rep = max(len(r.syncs), 1)
        comp = sum(s.compile_s for s in syncs) / per_rep * 1e3
        app = sum(s.apply_s for s in syncs) / per_rep * 1e3
        big = max(syncs, key=lambda s: len(s.applied), default=None)
        biggest = (
            "-"
            if big is None or not r.cell.netpol
            else f"{(big.compile_s + big.apply_s) * 1e3:.1f} ({len(big.applied)} pods)"
        )
        netpol = r.cell.netpol
        lines.append(
            f"{r.cell.id:<26} {ok:>4} {fmt(med(r.first)):>9} {fmt(med(r.steady)):>9} "
            f"{ratio:>27} {len(syncs) // per_rep if netpol else '-':>6} "
            f"{fmt(comp if netpol else None, digits=1):>11} "
            f"{fmt(app if netpol else None, digits=1):>9} {biggest:>16}"
        )
    for r in results:
        for e in r.errors:
            lines.append(f"  {r.cell.id}: FAILED: {e}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1, help="repeats per cell")
    ap.add_argument("-R", "--rounds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--model", default="small", choices=("small", "paper"))
    ap.add_argument("--data-dir", default=os.environ.get("ZTFL_DATA_DIR"))
    ap.add_argument("--json", help="also write the raw durations and sync reports here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the local backend needs network namespaces")
    if not args.data_dir:
        sys.exit("set ZTFL_DATA_DIR or --data-dir to the MNIST directory")
    machine = machine_info()
    machine["load_before"] = [round(x, 2) for x in os.getloadavg()]
    backend = backends.create("local", data_dir=args.data_dir)
    note = backend.note
    results = [CellResult(c) for c in cells(args.clients, args.rounds, args.model)]
    t0 = time.monotonic()
    try:
        with SyncRecorder() as rec:
            for rep in range(args.n):
                for r in results:
                    rec.take()
                    t = time.monotonic()
                    row, _ = runner.run_cell(backend, r.cell)
                    r.wall_s.append(time.monotonic() - t)
                    syncs = rec.take()
                    if row["success"]:
                        r.durations.append(list(row["metrics"]["durations"]))
                        r.syncs.append(syncs)
                    else:
                        r.errors.append(str(row["success_reason"]))
                    print(
                        f"[{rep + 1}/{args.n}] {r.cell.id}: "
                        f"{'ok' if row['success'] else 'FAILED'} in {r.wall_s[-1]:.1f} s",
                        flush=True,
                    )
    finally:
        backend.cluster.teardown()
    machine["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print(report(results, args.n, args.rounds, machine))
    print(f"\ntotal {time.monotonic() - t0:.0f} s; cluster: {note}")
    if args.json:
        doc = {
            "machine": machine,
            "n": args.n,
            "cells": [
                {
                    "id": r.cell.id,
                    "durations": r.durations,
                    "errors": r.errors,
                    "wall_s": r.wall_s,
                    "syncs": [
                        [
                            {"compile_s": s.compile_s, "apply_s": s.apply_s,
                             "applied": len(s.applied), "unchanged": len(s.unchanged),
                             "removed": len(s.removed)}
                            for s in rep
                        ]
                        for rep in r.syncs
                    ],
                }
                for r in results
            ],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0 if not any(r.errors for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
