"""Soak benchmark: one long FL run (default 5 clients x 200 rounds at SEC3 + NET2) on the local
backend through the harness's own ``runner.run_cell``, watching for slow failures.

Reports the per-round failure rate (rounds that failed, and failure events per client-round),
failures by class (fl_app's and the harness's), the peak and the growth of the resident memory
(VmRSS from /proc/<pid>/status) of the FL server and of the delay line, and what leaked after
the cluster was torn down (network namespaces, processes, cgroups).

Run as root::

    ZTFL_DATA_DIR=/work/shared/data/mnist .venv/bin/python benchmarks/soak.py \\
        --rounds 200 --clients 5 --sec SEC3 --net NET2 --json soak.json

The server's pid is found through the pod (its network namespace's processes running
``fl_app.server``); the delay line's through ``backend.netem.handle(ns).status().pid``. Memory
growth is judged on the second half of the run against the first (warm-up excluded): the bound
``--rss-growth-mib`` (default 50 MiB) is checked and printed as PASS/FAIL, as is the failure-rate
bound ``--max-failure-rate`` (default 0.02, the issue's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pytest_ztfl import backends, runner
from pytest_ztfl.matrix import Cell, Workload


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def server_pid(cluster: Any, ns: str) -> int | None:
    """The fl_app.server process of the server pod: a process in the pod's network namespace
    whose command line runs ``fl_app.server`` (pods share the host PID namespace locally)."""
    try:
        netns = cluster.pod_info(ns, "fl-server").netns
    except Exception:  # the pod may not exist yet
        return None
    r = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    for tok in r.stdout.split():
        try:
            cmd = Path(f"/proc/{tok}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fl_app.server" in cmd:
            return int(tok)
    return None


class Sampler(threading.Thread):
    """Samples the server's and the delay line's VmRSS once a second while the run goes."""

    def __init__(self, backend: Any, ns: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.netem = backend.cluster, backend.netem
        self.ns, self.interval = ns, interval
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.released = threading.Event()  # set when the harness releases the rounds
        self.t0 = time.monotonic()

    def run(self) -> None:
        spid: int | None = None
        while not self.stop.wait(self.interval):
            if spid is None or rss_kib(spid) is None:
                spid = server_pid(self.cluster, self.ns)
            dpid = None
            handle = self.netem.handle(self.ns) if self.netem is not None else None
            if handle is not None:
                try:
                    dpid = handle.status(check_rules=False).pid
                except Exception:  # torn down meanwhile
                    dpid = None
            self.samples.append({
                "t": round(time.monotonic() - self.t0, 1),
                "rounds": self.released.is_set(),
                "server_pid": spid, "server_kib": rss_kib(spid),
                "delayline_pid": dpid, "delayline_kib": rss_kib(dpid),
            })


def leftovers(cluster_name: str) -> dict[str, list[str]]:
    """What of this cluster is still on the machine after teardown."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    procs = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cluster_name in cmd:
            procs.append(f"{d.name}: {cmd[:120]}")
    cg = [str(p) for p in Path("/sys/fs/cgroup").glob(f"**/{cluster_name}*")][:20]
    return {
        "netns": [line.split()[0] for line in netns.splitlines() if cluster_name in line],
        "processes": procs,
        "cgroups": cg,
    }


def half_growth(values: list[int]) -> float | None:
    """Median of the last quarter minus median of the second quarter, in MiB."""
    if len(values) < 8:
        return None
    q = len(values) // 4
    a, b = sorted(values[q:2 * q]), sorted(values[3 * q:])
    return (b[len(b) // 2] - a[len(a) // 2]) / 1024


def _progress(line: str, sampler: Sampler) -> None:
    """Print the harness's lines, but only every 20th round (and every failed one)."""
    text = line.strip()
    if "rounds released" in text:
        sampler.released.set()
    if text.startswith("round "):
        n = int(text.split()[1].rstrip(":"))
        if n % 20 and "FAILED" not in text:
            return
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--sec", default="SEC3")
    p.add_argument("--net", default="NET2")
    p.add_argument("--mtls", default="native", choices=("native", "sidecar"))
    p.add_argument("--max-steps", type=int, default=10, help="local steps per round (0: epoch)")
    p.add_argument("--round-deadline", type=float, default=30.0)
    p.add_argument("--data-dir", default=os.environ.get("ZTFL_DATA_DIR"))
    p.add_argument("--max-failure-rate", type=float, default=0.02)
    p.add_argument("--rss-growth-mib", type=float, default=50.0)
    p.add_argument("--json", type=Path, help="write the figures (and the RSS series) here")
    a = p.parse_args(argv)
    if not a.data_dir:
        p.error("--data-dir or $ZTFL_DATA_DIR is required")
    wl = Workload(clients=a.clients, rounds=a.rounds, model="small", max_steps=a.max_steps,
                  eval_every=max(1, a.rounds // 10), round_deadline=a.round_deadline,
                  target_accuracy=0.99)
    tls = a.sec in ("SEC2", "SEC3")
    cell = Cell(a.sec, a.net, "iid", 0, wl, mtls=a.mtls if tls else None)
    backend = backends.create("local", data_dir=a.data_dir)
    cluster = backend.cluster
    name = cluster.name
    ns = runner.namespace_for(cell)
    sampler = Sampler(backend, ns)
    t0 = time.monotonic()
    try:
        sampler.start()
        row, events = runner.run_cell(
            backend, cell, progress=lambda s, level=0: _progress(s, sampler)
        )
    finally:
        sampler.stop.set()
        sampler.join(timeout=5)
        cluster.teardown()
    wall = time.monotonic() - t0
    left = leftovers(name)
    evs = [json.loads(line) for line in events.decode().splitlines() if line.strip()]
    ends = [e for e in evs if e["event"] == "round_end"]
    fails = [e for e in evs if e["event"] == "failure"]
    failed_rounds = sum(not e["ok"] for e in ends)
    client_rounds = sum(len(e["participants"]) + len(e["failed"]) for e in ends)
    round_rate = failed_rounds / len(ends) if ends else 1.0
    failure_rate = len([f for f in fails if f["round"] is not None]) / max(client_rounds, 1)
    # Growth is judged on the samples taken while rounds ran (start-up is not a leak).
    during = [s for s in sampler.samples if s["rounds"]]
    srv = [s["server_kib"] for s in during if s["server_kib"]]
    dl = [s["delayline_kib"] for s in during if s["delayline_kib"]]
    srv_all = [s["server_kib"] for s in sampler.samples if s["server_kib"]]
    dl_all = [s["delayline_kib"] for s in sampler.samples if s["delayline_kib"]]
    durations = [e["duration"] for e in ends]
    out = {
        "cell": cell.id, "clients": a.clients, "rounds_planned": a.rounds,
        "rounds_run": len(ends), "max_steps": a.max_steps, "wall_seconds": round(wall, 1),
        "success": row["success"], "success_reason": row["success_reason"],
        "failed_rounds": failed_rounds, "round_failure_rate": round(round_rate, 4),
        "failure_events": len(fails), "client_round_failure_rate": round(failure_rate, 5),
        "failures_by_fl_class": dict(Counter(f["class"] for f in fails)),
        "failures_by_class": row["failures_by_class"],
        "round_seconds_median": sorted(durations)[len(durations) // 2] if durations else None,
        "round_seconds_max": max(durations) if durations else None,
        "final_accuracy": row["metrics"].get("final_accuracy"),
        "net_mechanism": row["overlays"].get("net", {}).get("mechanism"),
        "server_rss_peak_mib": round(max(srv_all) / 1024, 1) if srv_all else None,
        "server_rss_growth_mib": half_growth(srv),
        "server_rss_first_last_mib": [round(srv[0] / 1024, 1), round(srv[-1] / 1024, 1)]
        if srv else None,
        "delayline_rss_peak_mib": round(max(dl_all) / 1024, 1) if dl_all else None,
        "delayline_rss_growth_mib": half_growth(dl),
        "rss_samples": len(sampler.samples),
        "leftovers": left,
    }
    checks = {
        "failure_rate": round_rate <= a.max_failure_rate
        and failure_rate <= a.max_failure_rate,
        # a growth that could not be computed (too few samples) is not a pass
        "server_rss_growth": out["server_rss_growth_mib"] is not None
        and out["server_rss_growth_mib"] <= a.rss_growth_mib,
        "delayline_rss_growth": out["net_mechanism"] != "delayline"
        or (out["delayline_rss_growth_mib"] is not None
            and out["delayline_rss_growth_mib"] <= a.rss_growth_mib),
        "no_leaks": not any(left.values()),
        "all_rounds": len(ends) == a.rounds,
    }
    out["checks"] = checks
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.write_text(json.dumps({**out, "samples": sampler.samples}, indent=1))
    for k, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {k}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
