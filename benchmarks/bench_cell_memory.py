"""Peak memory of a matrix run on the local backend, whole and per FL client (PSS).

Runs ``python -m pytest ARGS...`` (a matrix run: ``--ztfl-matrix=... --ztfl-out=...``) and,
once a second while it runs, reads ``/proc/PID/smaps_rollup`` of every process in a local
pod's cgroup (its path names the container: ``.../<namespace>.<pod>.<container>``) and of the
clusters' zygotes (``k8s_fixtures.local.zygote``). PSS charges shared pages (a forked client
shares the zygote's pre-imported ones) to each sharer in proportion, so the per-process PSS
values add up to what the processes really take. The sample with the largest sum is kept and
printed: the sum, per FL client (its container's processes: the stub and the forked worker),
the server, the sidecars and the zygotes, with the machine's used memory (MemTotal -
MemAvailable) before the run and at that sample.

    python benchmarks/bench_cell_memory.py -- --ztfl-matrix=benchmarks/clients100.yaml \
        --ztfl-out=OUT -p no:cacheprovider
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
from collections import defaultdict
from typing import Any


def _kb(path: str, field: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def used_mb() -> float:
    return (_kb("/proc/meminfo", "MemTotal") - _kb("/proc/meminfo", "MemAvailable")) / 1024


def _container(pid: str) -> str | None:
    """``namespace.pod.container`` of a local pod's process, "zygote", or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                path = line.rstrip().split(":", 2)[-1]
                if "/ztfl-" in path and path.count("/") >= 2:
                    return path.rsplit("/", 1)[1]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"k8s_fixtures.local.zygote" in f.read():
                return "zygote"
    except OSError:
        pass
    return None


def sample() -> dict[str, list[int]]:
    """container -> PSS (kB) of each of its processes, now."""
    out: dict[str, list[int]] = defaultdict(list)
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        name = _container(pid)
        if name is None:
            continue
        try:
            out[name].append(_kb(f"/proc/{pid}/smaps_rollup", "Pss"))
        except OSError:
            continue
    return out


def summary(s: dict[str, list[int]]) -> dict[str, Any]:
    def mb(kb: float) -> float:
        return round(kb / 1024, 1)

    clients = [sum(v) for k, v in s.items() if k.endswith(".fl-client")]
    return {
        "total_mb": mb(sum(sum(v) for v in s.values())),
        "clients": len(clients),
        "client_pss_mb_median": mb(statistics.median(clients)) if clients else None,
        "client_pss_mb_max": mb(max(clients)) if clients else None,
        "clients_total_mb": mb(sum(clients)),
        "server_mb": mb(sum(sum(v) for k, v in s.items() if k.endswith(".fl-server"))),
        "proxies_mb": mb(sum(sum(v) for k, v in s.items() if k.endswith(".ztfl-proxy"))),
        "zygotes_mb": mb(sum(s.get("zygote", []))),
        "processes": sum(len(v) for v in s.values()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = [x for x in a.pytest_args if x != "--"]
    before = used_mb()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *args])
    best: dict[str, Any] = {"total_mb": -1.0}
    try:
        while proc.poll() is None:
            s = summary(sample())
            if s["total_mb"] > best["total_mb"]:
                best = {**s, "machine_used_mb": round(used_mb(), 1),
                        "at_s": round(time.monotonic() - t0, 1)}
            time.sleep(a.interval)
    finally:
        if proc.poll() is None:
            proc.terminate()
        rc = proc.wait()
    print(json.dumps({"peak": best, "machine_used_mb_before": round(before, 1),
                      "wall_s": round(time.monotonic() - t0, 1), "pytest_rc": rc,
                      "machine": f"{platform.node()} {os.cpu_count()} CPU",
                      "load_after": os.getloadavg()}, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
