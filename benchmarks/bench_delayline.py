"""Benchmark of the userspace NFQUEUE delay line (root, network namespaces).

Measures, on a private topology (prefix ``ztdl-b``):
1. CPU cost per packet, passed (zero delay: verdict in the callback) and held (10 ms on the
   heap), from the delay line's own utime+stime over a paced UDP flood;
2. the maximum sustained packet rate: offered rate stepped up until the kernel queue drops
   packets or fewer than 99% of the sent packets get through;
3. the emulation error at NET2 and NET4 under a bulk TCP transfer: one-way delay of spaced UDP
   probes in both directions against the configured model, next to the idle figures, and the
   delay line's release lateness.
Every figure is the median of ``--repeats`` runs; n and the machine are printed.

    .venv/bin/python benchmarks/bench_delayline.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import time
from typing import Any

from k8s_fixtures.local.topology import Node, PodLink
from k8s_fixtures.netem.calibrate import (
    ProbeServer,
    _env,
    machine_info,
    probe_cmd,
    run_probe,
)
from k8s_fixtures.netem.models import DelaySampler
from k8s_fixtures.netem.overlay import NetemHandle, apply, class_spec
from k8s_fixtures.netem.profiles import Profile, get_profile, parse_profile
from k8s_fixtures.netem.stats import percentile
from k8s_fixtures.proc import cpu_seconds


def cpu_s(pid: int) -> float:
    cpu = cpu_seconds(pid)
    if cpu is None:
        raise RuntimeError(f"delay line {pid} is gone")
    return cpu


def seen(h: NetemHandle) -> int:
    return sum(int(c["seen"]) for c in h.status().classes.values())


def kdrops(h: NetemHandle) -> int:
    return h.status().kernel_queue_drops


def flood(c: PodLink, srv: PodLink, pps: float, seconds: float, senders: int = 1
          ) -> dict[str, Any]:
    """``senders`` parallel flood processes (one Python sender tops out near 40k pps)."""
    procs = [subprocess.Popen(probe_cmd(c.netns, "flood", "--host", srv.ip, "--pps",
                                        str(pps / senders), "--seconds", str(seconds)),
                              stdout=subprocess.PIPE, env=_env()) for _ in range(senders)]
    outs = [json.loads(p.communicate(timeout=seconds + 60)[0]) for p in procs]
    return {"sent": sum(o["sent"] for o in outs),
            "seconds": max(o["seconds"] for o in outs)}


def med(xs: list[float]) -> float:
    return percentile(xs, 50)


def cost_per_packet(node: Node, c: PodLink, srv: PodLink, prof: Profile, repeats: int,
                    pps: float, seconds: float) -> dict[str, Any]:
    h = apply(prof, node.netns, [(c, srv)], mechanism="delayline")
    try:
        pid = h.status().pid
        assert pid is not None
        t0, c0 = time.monotonic(), cpu_s(pid)
        time.sleep(seconds)  # idle baseline (heartbeat only)
        idle = (cpu_s(pid) - c0) / (time.monotonic() - t0)
        per: list[float] = []
        n_total = 0
        for _ in range(repeats):
            s0, c0, t0 = seen(h), cpu_s(pid), time.monotonic()
            flood(c, srv, pps, seconds)
            _wait_drained(h)
            dt = time.monotonic() - t0
            n = seen(h) - s0
            n_total += n
            per.append((cpu_s(pid) - c0 - idle * dt) / n * 1e6)
        return {"us_per_packet": med(per), "runs": per, "packets": n_total,
                "offered_pps": pps, "idle_cpu_share": idle}
    finally:
        h.stop()


def _wait_drained(h: NetemHandle, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(int(c["held_now"]) == 0 for c in h.status().classes.values()):
            return
        time.sleep(0.05)


def max_rate(node: Node, c: PodLink, srv: PodLink, repeats: int, seconds: float,
             rates: list[float], senders: int) -> dict[str, Any]:
    prof = parse_profile("HOLD10", {"up": {"delay_ms": 10}, "down": {"delay_ms": 10}})
    steps = []
    best = 0.0
    h = apply(prof, node.netns, [(c, srv)], mechanism="delayline")
    try:
        pid = h.status().pid
        assert pid is not None
        for r in rates:
            got, ok_all, cpu, why, sent_rate = [], True, [], [], []
            for _ in range(repeats):
                s0, d0, c0, t0 = seen(h), kdrops(h), cpu_s(pid), time.monotonic()
                res = flood(c, srv, r, seconds, senders)
                _wait_drained(h)
                n, drops = seen(h) - s0, kdrops(h) - d0
                cpu.append((cpu_s(pid) - c0) / (time.monotonic() - t0))
                rate = n / res["seconds"]
                got.append(rate)
                sent_rate.append(res["sent"] / res["seconds"])
                ok = drops == 0 and n >= 0.99 * res["sent"]
                ok_all &= ok
                if not ok:
                    why.append(f"sent {res['sent']} seen {n} kernel drops {drops}")
            st = {"offered_pps": r, "sent_pps_median": med(sent_rate),
                  "through_pps_median": med(got), "zero_drops": ok_all,
                  "delayline_cpu_share_median": med(cpu), "problems": why}
            steps.append(st)
            print(f"  offered {r:>8.0f} pps: sent {med(sent_rate):>8.0f}, "
                  f"through {med(got):>8.0f} pps, "
                  f"clean={ok_all}, delay line CPU {100 * med(cpu):.0f}% {'; '.join(why)}",
                  flush=True)
            if ok_all:
                best = max(best, med(got))
            else:
                break
        return {"max_sustained_pps": best, "steps": steps, "held_ms": 10, "senders": senders}
    finally:
        h.stop()


def model_samples(prof: Profile, direction: str, n: int = 20000) -> list[float]:
    """The configured one-way delay distribution (ms), simulated."""
    s = DelaySampler(class_spec(prof, direction), random.Random(12345))
    return [s.sample() * 1e3 for _ in range(n)]


def one_way(c: PodLink, srv: PodLink, n: int, interval_ms: float
            ) -> tuple[list[float], list[float]]:
    r = run_probe(c.netns, "udp", "--host", srv.ip, "--n", str(n), "--interval-ms",
                  str(interval_ms), "--drain-s", "2")
    up = [(p["srv"] - p["sent"]) * 1e3 for p in r["probes"] if p["srv"] is not None]
    down = [(p["back"] - p["srv"]) * 1e3 for p in r["probes"]
            if p["srv"] is not None and p["back"] is not None]
    return up, down


def emulation_error(node: Node, c: PodLink, srv: PodLink, name: str, repeats: int,
                    n: int) -> dict[str, Any]:
    prof = get_profile(name)
    spacing = max(2.0, 4 * max(prof.up.jitter_std_ms, prof.down.jitter_std_ms))
    out: dict[str, Any] = {"profile": name, "n_probes_per_run": n, "runs": repeats}
    h = apply(prof, node.netns, [(c, srv)], mechanism="delayline")
    try:
        for load in ("idle", "bulk-down"):
            errs: dict[str, list[float]] = {"up_p50": [], "up_p99": [], "down_p50": [],
                                            "down_p99": []}
            late: list[float] = []
            for _ in range(repeats):
                bulk = None
                if load != "idle":
                    secs = n * spacing / 1e3 + 3
                    bulk = subprocess.Popen(probe_cmd(c.netns, "bulk", "--host", srv.ip,
                                                      "--direction", "down", "--seconds",
                                                      f"{secs:.1f}"),
                                            stdout=subprocess.DEVNULL, env=_env())
                    time.sleep(1.0)  # let the flow leave slow start before probing
                before = {q: dict(v) for q, v in h.status().classes.items()}
                up, down = one_way(c, srv, n, spacing)
                after = h.status().classes
                if bulk is not None:
                    bulk.wait(timeout=120)
                for d, xs in (("up", up), ("down", down)):
                    model = model_samples(prof, d)
                    for q in (50, 99):
                        errs[f"{d}_p{q}"].append(percentile(xs, q) - percentile(model, q))
                released = sum(after[q]["released"] - before[q]["released"] for q in after)
                lsum = sum(after[q]["late_sum_us"] - before[q]["late_sum_us"] for q in after)
                late.append(lsum / max(1, released))
            out[load] = {k: med(v) for k, v in errs.items()} | {
                "release_lateness_us_median": med(late)}
            print(f"  {name} {load:>9}: one-way delay minus the model's, per quantile: "
                  + ", ".join(f"{k} {med(v):+.2f} ms" for k, v in errs.items())
                  + f"; release lateness {med(late):.0f} us", flush=True)
        return out
    finally:
        h.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--probes", type=int, default=150)
    ap.add_argument("--senders", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_delayline: needs root (network namespaces, iptables)", file=sys.stderr)
        return 2
    mach = machine_info()
    print(f"machine: {mach}")
    node = Node(prefix=f"ztdl-b{secrets.token_hex(3)}").create()
    server: ProbeServer | None = None
    result: dict[str, Any] = {"machine": mach, "repeats": a.repeats}
    try:
        srv, cli = node.add_pod("srv"), node.add_pod("cli")
        server = ProbeServer(srv.netns)
        zero = parse_profile("ZERO", {"up": {"delay_ms": 0}, "down": {"delay_ms": 0}})
        hold = parse_profile("HOLD10", {"up": {"delay_ms": 10}, "down": {"delay_ms": 10}})
        print("1. CPU per packet (UDP flood 20k pps, 64 B)")
        result["passed"] = cost_per_packet(node, cli, srv, zero, a.repeats, 20_000, a.seconds)
        result["held"] = cost_per_packet(node, cli, srv, hold, a.repeats, 20_000, a.seconds)
        for k in ("passed", "held"):
            r = result[k]
            print(f"  {k}: {r['us_per_packet']:.2f} us/packet (median of {a.repeats}, "
                  f"n={r['packets']} packets)", flush=True)
        print("2. maximum sustained packet rate (10 ms hold, zero kernel drops, >= 99% through)")
        result["max_rate"] = max_rate(node, cli, srv, a.repeats, a.seconds,
                                      [10e3, 20e3, 40e3, 60e3, 80e3, 100e3, 130e3, 160e3],
                                      a.senders)
        print(f"  max sustained: {result['max_rate']['max_sustained_pps']:.0f} pps")
        print(f"3. emulation error under bulk load (n={a.probes} probes x {a.repeats} runs)")
        result["error"] = [emulation_error(node, cli, srv, p, a.repeats, a.probes)
                           for p in ("NET2", "NET4")]
    finally:
        if server is not None:
            server.stop()
        node.destroy()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
