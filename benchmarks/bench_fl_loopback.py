"""Loopback FL benchmark: how close a round gets to its compute floor, per model.

For each model (default: the small CNN and the paper CNN) this runs ``fl_app.local`` with 5
clients x 10 rounds on 127.0.0.1 and reads the server's event log back through
``fl_app.summary``. Per round it reports

* duration: ``round_end.duration`` (server clock, round_start -> round_end),
* compute floor: the slowest participant's ``train_seconds`` + the server's
  ``aggregation_seconds`` (``RoundRecord.compute_floor``),
* their ratio (goal: median <= 1.10), and the bytes moved (down + up, all clients).

The overhead above the floor is everything else a round costs: serialising and sending the
global model, the clients' decode/encode, the update upload and its validation. With 5 client
processes on a 2-core machine the slowest participant's train time already includes the CPU
contention between clients, so the floor is the floor *on this machine*.

It also times ``fl_app.fedavg.fedavg`` on 5 random paper-CNN state dicts (median of n calls).

Run: ``python benchmarks/bench_fl_loopback.py --data-dir DIR [--json out.json]``. Prints the
machine (nproc, CPU model, load average before and after), a table per model, and a JSON
summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.events import read_events
from fl_app.fedavg import fedavg
from fl_app.models import MODELS, build_model
from fl_app.summary import RunSummary, summarize
from fl_app.tensors import Layout, state_to_arrays

GOAL = 1.10
RUN_TIMEOUT = 1800.0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import grpc
    import torch

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "grpcio": grpc.__version__,
        "loadavg_before": list(os.getloadavg()),
    }


def run_fl(
    model: str, data_dir: str, clients: int, rounds: int, extra: list[str], workdir: Path
) -> tuple[RunSummary, float]:
    """One ``fl_app.local`` run in its own process group; its summary and wall time."""
    events = workdir / f"events-{model}.jsonl"
    argv = [
        sys.executable, "-m", "fl_app.local",
        "--clients", str(clients), "--rounds", str(rounds), "--model", model,
        "--data-dir", data_dir, "--events", str(events), "--run-id", f"bench-{model}",
        "--eval-every", str(rounds), *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench: fl_app.local --model {model} failed ({proc.returncode}):\n{out}")
    return summarize(read_events(events)), wall


def round_table(s: RunSummary) -> list[dict[str, Any]]:
    return [
        {
            "round": r.round,
            "duration": r.duration,
            "max_train_seconds": r.max_train_seconds,
            "aggregation_seconds": r.aggregation_seconds,
            "floor": r.compute_floor,
            "ratio": r.duration / r.compute_floor if r.compute_floor > 0 else float("inf"),
            "overhead": r.duration - r.compute_floor,
            "bytes": r.bytes_down + r.bytes_up,
            "participants": r.participants,
        }
        for r in s.rounds
    ]


def model_report(model: str, s: RunSummary, wall: float) -> dict[str, Any]:
    rows = round_table(s)
    steady = rows[1:] or rows  # round 1 also pays each client's one-off start-up work
    return {
        "model": model,
        "ok": s.ok,
        "rounds": len(rows),
        "wall_seconds": round(wall, 3),
        "final_accuracy": s.final_accuracy,
        "median_duration": statistics.median(r["duration"] for r in rows),
        "median_floor": statistics.median(r["floor"] for r in rows),
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "median_ratio_rounds_2_on": statistics.median(r["ratio"] for r in steady),
        "median_overhead_seconds": statistics.median(r["overhead"] for r in rows),
        "median_bytes_per_round": statistics.median(r["bytes"] for r in rows),
        "goal_met": statistics.median(r["ratio"] for r in rows) <= GOAL,
        "per_round": rows,
    }


def time_fedavg(clients: int, repeats: int) -> dict[str, Any]:
    layout = Layout.of(state_to_arrays(build_model("paper").state_dict()))
    rng = np.random.default_rng(0)
    updates = [
        (
            {n: rng.standard_normal(shape).astype(np.float32) for n, shape, _ in layout.entries},
            int(rng.integers(1000, 2000)),
        )
        for _ in range(clients)
    ]
    fedavg(updates)  # warm-up: first-touch page faults of the output arrays
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fedavg(updates)
        times.append(time.perf_counter() - t0)
    return {
        "model": "paper",
        "clients": clients,
        "n": repeats,
        "median_seconds": statistics.median(times),
        "min_seconds": min(times),
        "max_seconds": max(times),
        "update_bytes": layout.nbytes,
    }


def print_rounds(rep: dict[str, Any]) -> None:
    print(f"\n== {rep['model']}: {rep['rounds']} rounds, wall {rep['wall_seconds']:.1f} s, "
          f"final accuracy {rep['final_accuracy']}")  # fmt: skip
    print(f"{'round':>5} {'duration s':>11} {'floor s':>9} {'train s':>9} {'agg ms':>8} "
          f"{'ratio':>7} {'overhead ms':>12} {'bytes':>12}")  # fmt: skip
    for r in rep["per_round"]:
        print(
            f"{r['round']:>5} {r['duration']:>11.3f} {r['floor']:>9.3f} "
            f"{r['max_train_seconds']:>9.3f} {1000 * r['aggregation_seconds']:>8.2f} "
            f"{r['ratio']:>7.3f} {1000 * r['overhead']:>12.1f} {r['bytes']:>12,}"
        )
    verdict = "met" if rep["goal_met"] else "MISSED"
    print(
        f"median ratio duration/floor {rep['median_ratio']:.3f} (goal <= {GOAL}: {verdict}); "
        f"rounds 2+ {rep['median_ratio_rounds_2_on']:.3f}; "
        f"median overhead {1000 * rep['median_overhead_seconds']:.1f} ms; "
        f"bytes/round {rep['median_bytes_per_round']:,.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("ZTFL_DATA_DIR"))
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    p.add_argument("--fedavg-repeats", type=int, default=30)
    p.add_argument("--json", type=Path, help="also write the JSON summary here")
    p.add_argument("extra", nargs="*", help="more fl_app.local flags, after --")
    ns = p.parse_args(argv)
    if not ns.data_dir or not os.path.isdir(ns.data_dir):
        p.error(f"--data-dir {ns.data_dir}: no such directory (or set ZTFL_DATA_DIR)")
    models = [m for m in ns.models.split(",") if m]
    info = machine()
    print(f"machine: nproc {info['nproc']}, CPU {info['cpu_model']}, python {info['python']}, "
          f"torch {info['torch']}, grpcio {info['grpcio']}, "
          f"load average {info['loadavg_before']}")  # fmt: skip
    print(f"runs: {ns.clients} clients x {ns.rounds} rounds per model on 127.0.0.1, "
          f"n = {ns.rounds} rounds per model")  # fmt: skip
    reports = []
    with tempfile.TemporaryDirectory(prefix="bench-fl-") as tmp:
        for model in models:
            s, wall = run_fl(model, ns.data_dir, ns.clients, ns.rounds, ns.extra, Path(tmp))
            rep = model_report(model, s, wall)
            print_rounds(rep)
            reports.append(rep)
    agg = time_fedavg(ns.clients, ns.fedavg_repeats)
    print(
        f"\nFedAvg, paper CNN, {agg['clients']} clients ({agg['update_bytes']:,} bytes each): "
        f"median {1000 * agg['median_seconds']:.2f} ms over n = {agg['n']} "
        f"(min {1000 * agg['min_seconds']:.2f}, max {1000 * agg['max_seconds']:.2f})"
    )
    info["loadavg_after"] = list(os.getloadavg())
    summary = {
        "machine": info,
        "clients": ns.clients,
        "rounds": ns.rounds,
        "goal_ratio": GOAL,
        "models": [{k: v for k, v in r.items() if k != "per_round"} for r in reports],
        "per_round": {r["model"]: r["per_round"] for r in reports},
        "fedavg": agg,
    }
    text = json.dumps(summary)
    if ns.json:
        ns.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
