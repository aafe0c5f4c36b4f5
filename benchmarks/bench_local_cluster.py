"""Benchmark of the local cluster backend: cluster up, 6 pods ready, namespace delete.

Run as root: ``python benchmarks/bench_local_cluster.py [-n 7]``. Each repeat creates a fresh
cluster, applies a namespace with 1 server + 5 client pods running an idle command, waits until
all 6 are Ready, deletes the namespace, and tears the cluster down. Prints the median (and
min/max) of each phase over n repeats, with the machine it ran on. Also times the start-up of
a Python process importing torch (what an FL workload pod pays before its first event).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from k8s_fixtures.local.backend import LocalCluster

IDLE = ["sleep", "infinity"]


def manifests(ns: str) -> list[dict[str, object]]:
    def pod(name: str, role: str) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"role": role}},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "command": IDLE}]}}
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server", "namespace": ns},
             "spec": {"selector": {"role": "server"}, "ports": [{"port": 8080}]}},
            pod("server", "server"), *(pod(f"client-{i}", "client") for i in range(5))]


def once(root: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    with LocalCluster(prefix="ztlcb", state_root=root) as c:
        t1 = time.perf_counter()
        c.apply(manifests("run"))
        c.wait_ready("run", timeout=30)
        t2 = time.perf_counter()
        c.delete(namespace="run")
        t3 = time.perf_counter()
    t4 = time.perf_counter()
    return {"cluster_up": t1 - t0, "six_pods_ready": t2 - t1, "up_plus_pods": t2 - t0,
            "namespace_delete": t3 - t2, "cluster_teardown": t4 - t3}


def torch_import(python: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", "import torch"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=7, help="repeats (median reported)")
    ap.add_argument("--torch", action="store_true", help="also time 'import torch' start-up")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (rootless timings: use the ztfl cluster CLI)")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [once(Path(tmp)) for _ in range(args.n)]
    load = os.getloadavg()[0]
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"kernel {platform.release()}, python {platform.python_version()}, "
          f"load avg {load:.2f}")
    print(f"n = {args.n} repeats; seconds: median (min - max)")
    for key in runs[0]:
        xs = [r[key] for r in runs]
        print(f"  {key:18} {statistics.median(xs):.3f} ({min(xs):.3f} - {max(xs):.3f})")
    if args.torch:
        ts = [torch_import(sys.executable) for _ in range(3)]
        print(f"  python -c 'import torch' (n=3): median {statistics.median(ts):.2f}s")


if __name__ == "__main__":
    main()
