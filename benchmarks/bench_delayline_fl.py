"""Benchmark: what the delay line costs and how exactly it holds packets during real FL rounds.

Run as root: ``python benchmarks/bench_delayline_fl.py [-n 3] [--net NET2] [--model paper]``.
One local cluster; each repeat runs the cell SEC0-<NET>-iid (``--clients`` x ``-R`` rounds)
through ``runner.run_cell``, exactly as a matrix run does, and reads the row's
``overlays.net.emulation``: the delay line's own counters over the rounds (packets held,
release lateness = actual minus scheduled release, loss drops, kernel queue drops; the max
lateness is the whole cell's) and its CPU time (user + system, ``/proc/<pid>/stat``) from the
rounds' release to the server's exit.

Reported: medians over the repeats of the delay line's CPU seconds per round, that CPU as a
share of the median round duration (a share of one core the workload cannot use on a small
machine), packets held per round, and the held-weighted mean and the max release lateness.
Prints n, the machine and its load average before and after (a shared machine inflates all).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from k8s_fixtures.netem.calibrate import machine_info
from pytest_ztfl import backends, runner
from pytest_ztfl.matrix import Cell, Workload


def account(row: dict[str, Any]) -> dict[str, float]:
    """One run's figures from its row (``overlays.net.emulation`` and the round durations)."""
    emu = row["overlays"]["net"]["emulation"]
    classes = list(emu["rounds"].values())  # the rounds alone
    held = sum(int(c["held_total"]) for c in classes)
    rounds = row["metrics"]["durations"]
    cpu = float(emu["delayline_cpu_s_per_round"])
    return {
        "cpu_s_per_round": cpu,
        "cpu_share_of_round": cpu / statistics.median(rounds),
        "held_per_round": held / len(rounds),
        "late_mean_us": sum(c["late_sum_us"] for c in classes)
        / max(1, sum(c["released"] for c in classes)),
        # the max is kept for the delay line's whole life (the cell's start-up included)
        "late_max_us": max(float(c["late_max_us"]) for c in emu["classes"].values()),
        "kernel_queue_drops": float(emu["kernel_queue_drops"]),
        "round_median_s": statistics.median(rounds),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="repeats")
    ap.add_argument("-R", "--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--net", default="NET2")
    ap.add_argument("--model", default="paper", choices=("small", "paper"))
    ap.add_argument("--data-dir", default=os.environ.get("ZTFL_DATA_DIR"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the local backend needs network namespaces")
    if not args.data_dir:
        sys.exit("set ZTFL_DATA_DIR or --data-dir to the MNIST directory")
    if args.net == "NET0":
        sys.exit("--net NET0 has no delay line to measure")
    wl = Workload(
        clients=args.clients,
        rounds=args.rounds,
        model=args.model,
        max_steps=10,
        eval_every=args.rounds,
    )
    cell = Cell(sec="SEC0", net=args.net, data="iid", seed=0, workload=wl)
    machine = machine_info()
    load_before = [round(x, 2) for x in os.getloadavg()]
    backend = backends.create("local", data_dir=args.data_dir)
    runs: list[dict[str, float]] = []
    try:
        for rep in range(args.n):
            t = time.monotonic()
            row, _ = runner.run_cell(backend, cell)
            if not row["success"] or "emulation" not in row["overlays"]["net"]:
                print(f"[{rep + 1}/{args.n}] {cell.id}: FAILED: {row['success_reason']}")
                continue
            runs.append(account(row))
            plane = row["overlays"]["net"]["emulation"].get("transport", {}).get("dataplane")
            print(f"[{rep + 1}/{args.n}] {cell.id}: {time.monotonic() - t:.1f} s, "
                  f"data plane {plane}", flush=True)
    finally:
        backend.cluster.teardown()
    load_after = [round(x, 2) for x in os.getloadavg()]
    if not runs:
        print("no successful run")
        return 1
    print(
        f"\n{cell.id}, {args.model} CNN, {args.clients} clients x {args.rounds} rounds; "
        f"medians of n = {len(runs)} runs"
    )
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"  {key:20s} {statistics.median(values):12.4g}   (all: "
              + ", ".join(f"{v:.4g}" for v in values) + ")")
    print(
        f"machine: {machine.get('cpu')} x {machine.get('cores')}, "
        f"load {load_before} -> {load_after}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
