"""Where an FL client's memory and start-up go: per-client PSS and a run's start-up time.

One repetition runs a real ``fl_app.server`` and N real ``fl_app.client`` processes on loopback
(no namespaces: this measures the workload's processes, not the pods around them), from the
source tree ``--tree`` (so two trees, e.g. ``main`` and a branch, give a before/after ratio):

* start-up: wall time from spawning the clients to the server's ``round_start`` of round 1
  (every client has imported torch, loaded its data and joined), and the clients' CPU seconds
  spent by then (``/proc/PID/stat``);
* memory: each client's ``/proc/PID/smaps_rollup`` (RSS, PSS, private anonymous) sampled once
  round 1 has ended (its data, model and first training are in memory).

``--fork`` starts the clients differently: one parent process imports ``fl_app.client``
(torch with it) once and forks every client from itself, which then runs ``fl_app.client``'s
``main`` (a zygote, without the pods' isolation): the pages torch's import wrote are shared
copy-on-write, so PSS counts 1/N of them per client. It shows what a zygote would save.

Medians over ``-n`` repetitions are printed with the machine and its load (``os.getloadavg``).

    python benchmarks/bench_client_memory.py --tree /work/main -n 3 --clients 5
    python benchmarks/bench_client_memory.py --tree . -n 3 --clients 5 [--fork]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FORK_PARENT = r"""
import gc, os, sys, time
import fl_app.client as c
gc.freeze()
n, rest = int(sys.argv[1]), sys.argv[2:]
pids = []
for cid in range(n):
    pid = os.fork()
    if pid == 0:
        argv = [a.replace("{cid}", str(cid)) for a in rest]
        os._exit(c.main(argv))
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
for p in pids:
    os.waitpid(p, 0)
"""


def smaps(pid: int) -> dict[str, int]:
    """kB fields of /proc/PID/smaps_rollup."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":"):
                out[parts[0][:-1]] = int(parts[1])
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(tree: Path, data: str, clients: int, rounds: int, fork: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # and cwd: ``-m`` puts it first on sys.path
    py = sys.executable
    server = subprocess.Popen(
        [py, "-m", "fl_app.server", "--host", "127.0.0.1", "--port", "0", "--events",
         os.devnull, "--data-dir", data, "--clients", str(clients), "--rounds", str(rounds),
         "--eval-every", str(rounds), "--round-deadline", "120", "--join-timeout", "300"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=tree)
    assert server.stdout is not None
    procs: list[subprocess.Popen[str]] = []
    try:
        port = None
        for line in server.stdout:
            e = json.loads(line)
            if e.get("event") == "server_ready":
                port = e["port"]
                break
        if port is None:
            raise RuntimeError("server did not start")
        t0 = time.monotonic()
        args = ["--server", f"127.0.0.1:{port}", "--data-dir", data, "--threads", "1"]
        if fork:
            parent = subprocess.Popen([py, "-c", FORK_PARENT, str(clients), *args,
                                       "--client-id", "{cid}"], stdout=subprocess.PIPE,
                                      text=True, env=env, cwd=tree)
            procs.append(parent)
            assert parent.stdout is not None
            pids = [int(p) for p in parent.stdout.readline().split()]
        else:
            procs += [subprocess.Popen([py, "-m", "fl_app.client", *args, "--client-id",
                                        str(cid)], env=env, cwd=tree)
                      for cid in range(clients)]
            pids = [p.pid for p in procs]
        startup = cpu = None
        mem: list[dict[str, int]] = []
        for line in server.stdout:
            e = json.loads(line)
            if e.get("event") == "round_start" and e["round"] == 1:
                startup = time.monotonic() - t0
                cpu = sum(cpu_seconds(p) for p in pids)
            if e.get("event") == "round_end" and e["round"] == 1:
                mem = [smaps(p) for p in pids]
                if fork:
                    mem.append(smaps(procs[0].pid))  # the parent's share of the pages
        server.wait(timeout=600)
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in [server, *procs]:
            if p.poll() is None:
                p.kill()
                p.wait()
    if startup is None or not mem:
        raise RuntimeError("the run ended before round 1 did")
    per_client = mem[:clients]
    return {
        "startup_s": startup,
        "startup_cpu_s_per_client": (cpu or 0.0) / clients,
        "pss_mb": statistics.median(m["Pss"] for m in per_client) / 1024,
        "rss_mb": statistics.median(m["Rss"] for m in per_client) / 1024,
        "anon_mb": statistics.median(m["Private_Dirty"] for m in per_client) / 1024,
        "total_pss_mb": sum(m["Pss"] for m in mem) / 1024,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--data-dir", default=os.environ.get("ZTFL_DATA_DIR", ""))
    p.add_argument("-n", type=int, default=3)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--fork", action="store_true", help="fork clients from one parent")
    p.add_argument("--json", action="store_true")
    ns = p.parse_args()
    load0 = os.getloadavg()
    runs = [one_run(ns.tree.resolve(), ns.data_dir, ns.clients, ns.rounds, ns.fork)
            for _ in range(ns.n)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out = {"tree": str(ns.tree), "clients": ns.clients, "fork": ns.fork, "n": ns.n,
           "machine": f"{platform.node()} {os.cpu_count()} cpu {platform.machine()} "
                      f"python {platform.python_version()}",
           "load_before": load0, "load_after": os.getloadavg(), "median": med, "runs": runs}
    if ns.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{out['machine']}; tree {ns.tree}; {ns.clients} clients; fork {ns.fork}; "
          f"n = {ns.n}; load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    for k, v in med.items():
        print(f"  {k:28s} median {v:9.2f}   runs {[round(r[k], 2) for r in runs]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
