"""Benchmark: what the delay line costs and how exactly it holds packets during real FL rounds.

Run as root: ``python benchmarks/bench_delayline_fl.py [-n 3] [--net NET2] [--model paper]``.
One local cluster; each repeat runs the cell SEC0-<NET>-iid (``--clients`` x ``-R`` rounds)
as a block of one arm (``runner.run_block``, rounds held between, as a matrix run does, so each
round's machine CPU is read around it), and reads the row's
``overlays.net.emulation``: the delay line's own counters over the rounds (packets held,
release lateness = actual minus scheduled release, loss drops, kernel queue drops; the max
lateness is the whole cell's) and its CPU time (user + system, ``/proc/<pid>/stat``) from the
rounds' release to the server's exit.

Reported: medians over the repeats of the delay line's CPU seconds per round, that CPU as a
share of the median round duration (a share of one core the workload cannot use on a small
machine), packets held per round, and the held-weighted mean and the max release lateness.
The delay line's CPU includes work that is not its own: a released packet's onward path (the
bridge, the receiving pod's TCP) runs in its verdict's context, where without it the sender's
would run it. So ``--baseline NET0`` also runs the same cell at NET0 in every repeat (order
alternating) and prints the machine's CPU per round (``cpu_machine_seconds``, all cores, from
/proc/stat) of both and their difference: what emulating the profile adds to the machine,
the delay line's own work and the kernel's queueing included (and the longer rounds' idle
costs too: an upper bound). ``--split`` samples the machine with ``perf record -a -g`` during
the rounds (k8s_fixtures.netem.cpusplit) and splits the delay line's CPU by call stack: the
onward path of the packets it releases (their bridge forward and receive softirq, run in its
verdict's context) apart from its own work, to which it adds what it makes the senders' context
do (the FORWARD rules and queueing); ``own_cpu_s_per_round`` is the delay line's CPU per round
scaled so, ``own_share_of_round_bound`` the same with every moment of its rounds that no sample
saw (``perf_coverage`` below 1) counted as its own. Sampling at 999 Hz on every core costs a
little of every arm's CPU. Prints n, the machine and its load average before and after (a
shared machine inflates all).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any

from k8s_fixtures.netem import cpusplit
from k8s_fixtures.netem.calibrate import machine_info
from k8s_fixtures.netem.process import window_config
from pytest_ztfl import backends, runner
from pytest_ztfl.design import Block
from pytest_ztfl.matrix import Cell, Workload


def machine_cpu_per_round(row: dict[str, Any]) -> float:
    """Median over the row's rounds of the machine's CPU seconds in the round."""
    return statistics.median(float(r["cpu_machine_seconds"]) for r in row["metrics"]["rounds"])


def account(row: dict[str, Any], split: cpusplit.Split | None = None) -> dict[str, float]:
    """One run's figures from its row (``overlays.net.emulation`` and the round durations)
    and, with ``split``, the delay line's own CPU."""
    emu = row["overlays"]["net"]["emulation"]
    classes = list(emu["rounds"].values())  # the rounds alone
    held = sum(int(c["held_total"]) for c in classes)
    rounds = row["metrics"]["durations"]
    cpu = float(emu["delayline_cpu_s_per_round"])
    own: dict[str, float] = {}
    if split is not None:
        scale = split.own_per_process()
        in_rounds = sum(float(r["cpu_delayline_seconds"]) for r in row["metrics"]["rounds"])
        # every moment of the process's rounds no sample saw counted as its own work: a bound
        # whichever stacks the lost samples had, if the onward path sampled in perf's window
        # (which also spans the holds between rounds, with next to no traffic) was in rounds
        bound = 1 - split.onward / SPLIT_HZ / in_rounds + split.elsewhere / split.in_process
        own = {
            "onward_share": split.onward / split.in_process,
            "elsewhere_share": split.elsewhere / split.in_process,
            "own_cpu_s_per_round": cpu * scale,
            "own_share_of_round": cpu * scale / statistics.median(rounds),
            "own_share_of_round_bound": cpu * max(scale, bound) / statistics.median(rounds),
            # sampled process time against /proc's inside the rounds (perf's window also
            # holds the holds between them): ~1 if no samples were lost
            "perf_coverage": split.in_process / SPLIT_HZ / in_rounds,
        }
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
        "machine_cpu_s_per_round": machine_cpu_per_round(row),
        **own,
    }


SPLIT_HZ = 999


def run_once(backend: backends.Backend, c: Cell, sample: bool, split: bool
             ) -> tuple[dict[str, Any], cpusplit.Split | None]:
    """Run ``c`` as a block of one; with ``sample``, perf samples its rounds (the baseline's
    too, so that both arms bear its cost), and with ``split`` their stacks are split."""
    block = Block(c.id, (c,), "round", 0)
    if not sample:
        return runner.run_block(backend, block)[0][0], None
    with cpusplit.PerfRecord(freq=SPLIT_HZ) as perf:
        row, _ = runner.run_block(backend, block, before_rounds=perf.enable,
                                  after_rounds=perf.disable)[0]
        if not (split and row["success"]):
            return row, None
        try:
            return row, cpusplit.split(perf.stacks())
        except ValueError as e:  # e.g. no process sent verdicts: one line, after clean-up
            sys.exit(f"--split: {c.id}: {e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="repeats")
    ap.add_argument("-R", "--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--net", default="NET2")
    ap.add_argument("--model", default="paper", choices=("small", "paper"))
    ap.add_argument("--data-dir", default=os.environ.get("ZTFL_DATA_DIR"))
    ap.add_argument("--baseline", choices=("NET0",), help="also run the cell at NET0 per repeat")
    ap.add_argument("--split", action="store_true",
                    help="split the delay line's CPU by call stack (perf record -a -g)")
    ap.add_argument("--windows", default="",
                    help="compare batch windows: comma-separated microseconds or 'auto' "
                         "(the delay line's default, 1 ms), run in turn in every repeat, the "
                         "order rotating (ZTFL_DELAYLINE_WINDOW_US)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the local backend needs network namespaces")
    if not args.data_dir:
        sys.exit("set ZTFL_DATA_DIR or --data-dir to the MNIST directory")
    if args.windows:
        return compare_windows(args, [w.strip() for w in args.windows.split(",") if w.strip()])
    if args.net == "NET0":
        sys.exit("--net NET0 has no delay line to measure")
    cell = bench_cell(args, args.net)
    base = bench_cell(args, args.baseline) if args.baseline else None
    machine = machine_info()
    load_before = [round(x, 2) for x in os.getloadavg()]
    backend = backends.create("local", data_dir=args.data_dir)
    runs: list[dict[str, float]] = []
    added: list[float] = []  # machine CPU per round, cell minus baseline, per repeat
    pooled: Counter[str] = Counter()  # --split: the runs' samples by category
    try:
        for rep in range(args.n):
            arms = [cell] if base is None else [cell, base] if rep % 2 == 0 else [base, cell]
            got: dict[str, float] = {}
            for c in arms:
                t = time.monotonic()
                row, split = run_once(backend, c, args.split, args.split and c is cell)
                if not row["success"] or (c is cell and "emulation" not in row["overlays"]["net"]):
                    print(f"[{rep + 1}/{args.n}] {c.id}: FAILED: {row['success_reason']}")
                    continue
                got[c.net] = machine_cpu_per_round(row)
                if c is cell:
                    runs.append(account(row, split))
                    if split is not None:
                        pooled.update(split.counts)
                plane = (row["overlays"]["net"].get("emulation") or {}).get(
                    "transport", {}).get("dataplane")
                print(f"[{rep + 1}/{args.n}] {c.id}: {time.monotonic() - t:.1f} s, "
                      f"data plane {plane}, machine CPU {got[c.net]:.3f} s per round",
                      flush=True)
            if base is not None and len(got) == 2:
                added.append(got[cell.net] - got[base.net])
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
    if pooled:
        inside = sum(n for k, n in pooled.items() if k != cpusplit.ELSEWHERE)
        print(f"  delay line CPU by stack, {sum(pooled.values())} samples at {SPLIT_HZ} Hz "
              f"pooled over the runs, as shares of its process's {inside}:")
        for k, n in pooled.most_common():
            print(f"    {n / inside:7.1%}  {k}")
    if added:
        share = statistics.median(added) / statistics.median(r["round_median_s"] for r in runs)
        print(f"  machine CPU {cell.net} adds over {args.baseline}: "
              f"{statistics.median(added):.3f} s per round = {share:.1%} of the {cell.net} "
              f"round (all: " + ", ".join(f"{v:.3f}" for v in added) + ")")
    print(
        f"machine: {machine.get('cpu')} x {machine.get('cores')}, "
        f"load {load_before} -> {load_after}"
    )
    return 0


def bench_cell(args: argparse.Namespace, net: str) -> Cell:
    """The benchmark's cell: SEC0 at ``net``, iid, seed 0, ``args``' workload."""
    wl = Workload(clients=args.clients, rounds=args.rounds, model=args.model, max_steps=10,
                  eval_every=args.rounds)
    return Cell(sec="SEC0", net=net, data="iid", seed=0, workload=wl)


def compare_windows(args: argparse.Namespace, windows: list[str]) -> int:
    """``--windows``: the cell once per window in every repeat, the windows' order rotating
    from repeat to repeat, so that a machine's drift falls on every window alike; prints each
    window's medians and, per repeat, each window's delay line CPU as a ratio to the first's."""
    for w in windows:
        if w != "auto":
            window_config(w)  # one clear error line before anything starts
    cell = bench_cell(args, args.net)
    machine = machine_info()
    load_before = [round(x, 2) for x in os.getloadavg()]
    backend = backends.create("local", data_dir=args.data_dir)
    runs: dict[str, dict[int, dict[str, float]]] = {w: {} for w in windows}  # by repeat
    order: list[list[str]] = []
    try:
        for rep in range(args.n):
            k = rep % len(windows)
            arms = windows[k:] + windows[:k]
            order.append(arms)
            for w in arms:
                if w == "auto":
                    os.environ.pop("ZTFL_DELAYLINE_WINDOW_US", None)
                else:
                    os.environ["ZTFL_DELAYLINE_WINDOW_US"] = w
                row, split = run_once(backend, cell, args.split, args.split)
                emu = row["overlays"]["net"].get("emulation")
                if not row["success"] or not emu:
                    print(f"[{rep + 1}/{args.n}] window {w}: FAILED: {row['success_reason']}")
                    continue
                got = account(row, split)
                runs[w][rep] = got
                print(f"[{rep + 1}/{args.n}] window {w} ({emu['transport']['batch_us']:.0f} us): "
                      f"{got['cpu_s_per_round']:.3f} s CPU per round = "
                      f"{got['cpu_share_of_round']:.2%} of {got['round_median_s']:.3f} s; "
                      f"{emu['transport']['wakeups']} passes", flush=True)
    finally:
        os.environ.pop("ZTFL_DELAYLINE_WINDOW_US", None)
        backend.cluster.teardown()
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(f"\n{cell.id}, {args.model} CNN, {args.clients} clients x {args.rounds} rounds; "
          f"orders {order}")
    for w, by_rep in runs.items():
        rs = list(by_rep.values())
        if rs:
            print(f"  window {w:>5}: n = {len(rs)}, delay line CPU per round "
                  f"{statistics.median(r['cpu_s_per_round'] for r in rs):.3f} s = "
                  f"{statistics.median(r['cpu_share_of_round'] for r in rs):.2%} of the round, "
                  f"round {statistics.median(r['round_median_s'] for r in rs):.3f} s, "
                  f"late mean {statistics.median(r['late_mean_us'] for r in rs):.0f} us")
            if "own_cpu_s_per_round" in rs[0]:  # --split: fewer passes should cut own work
                own = statistics.median(r["own_cpu_s_per_round"] for r in rs)
                onward = statistics.median(r["cpu_s_per_round"] * r["onward_share"] for r in rs)
                share = statistics.median(r["own_share_of_round"] for r in rs)
                bound = statistics.median(r["own_share_of_round_bound"] for r in rs)
                print(f"    own {own:.3f} s per round, onward path {onward:.3f} s; own share "
                      f"of the round {share:.2%} (bound {bound:.2%})")
    first = windows[0]
    for w in windows[1:]:
        pairs = [runs[w][rep]["cpu_s_per_round"] / a["cpu_s_per_round"]
                 for rep, a in runs[first].items() if rep in runs[w]]  # the same repeat's
        if pairs:
            print(f"  CPU, window {w} / window {first}: median {statistics.median(pairs):.3f} "
                  "(per repeat: " + ", ".join(f"{x:.3f}" for x in pairs) + ")")
    print(f"machine: {machine.get('cpu')} x {machine.get('cores')}, "
          f"load {load_before} -> {load_after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
