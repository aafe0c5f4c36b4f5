"""Benchmark: what the delay line adds to the machine's CPU for the same bulk transfers.

Run as root: ``python benchmarks/bench_delayline_bulk.py [-n 3] [--net NET2] [--seconds 5]``.
A private topology (one client, one server pod); the profile applied with the delay line; per
repeat and direction one bulk TCP transfer of ``--seconds`` through it (the delay line delays
and shapes the rate), then the same transfer with the NFQUEUE rules flushed and the rate
shaped by the kernel instead (tbf on the two hops, as before the delay line shaped it; the
delay line sees nothing). For
each: the delay line process's user and system CPU (``/proc/<pid>/stat``, all its threads) and
the whole machine's (``/proc/stat``: user+nice, system+irq+softirq), per MB moved. The
difference of the machine's CPU per MB between the two is what emulating the delay costs; the
delay line's own system time includes the released packets' onward path (bridge, the
receiver's TCP), which runs in its verdicts' context. Set ``ZTFL_DELAYLINE_DATAPLANE=python`` to
measure the Python loop. Prints medians over the repeats, n, the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from k8s_fixtures.netem import apply, get_profile, tc
from k8s_fixtures.netem.calibrate import ProbeServer, machine_info, private_topology, run_probe

TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` (all threads)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) / TCK, int(f[12]) / TCK


def machine_cpu() -> tuple[float, float]:
    """The machine's user (+nice) and system (+irq +softirq) CPU seconds since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (v[0] + v[1]) / TCK, (v[2] + v[5] + v[6]) / TCK


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="repeats")
    ap.add_argument("--net", default="NET2")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_delayline_bulk: needs root (network namespaces)", file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    plane = ""
    with private_topology() as (node, _st):
        srv, cli = node.add_pod("srv"), node.add_pod("cli")
        server = ProbeServer(srv.netns)
        try:
            for _ in range(args.n):
                with apply(get_profile(args.net), node.netns, [(cli, srv)],
                           mechanism="delayline") as h:
                    pid = h.status().pid
                    assert pid is not None and h.chain is not None
                    plane = str(h.status().transport.get("dataplane"))
                    ls = h.links[0]
                    hops = {"up": ls.up_hop(), "down": ls.down_hop(node.netns)}
                    for arm in ("delay line", "tbf only"):
                        if arm == "tbf only":
                            subprocess.run(["ip", "netns", "exec", node.netns, "iptables", "-F",
                                            h.chain], check=True)
                            for d, hop in hops.items():
                                tc.run_all(tc.render_rate(h.links[0].profile, d, hop))
                        for d in ("down", "up"):
                            p0, m0 = proc_cpu(pid), machine_cpu()
                            r = run_probe(cli.netns, "bulk", "--host", srv.ip, "--direction", d,
                                          "--seconds", f"{args.seconds:g}")
                            p1, m1 = proc_cpu(pid), machine_cpu()
                            mb = r["timeline"][-1][1] / 1e6
                            rows.setdefault((arm, d), []).append({
                                "MB": mb,
                                "dl_user_ms_per_MB": 1e3 * (p1[0] - p0[0]) / mb,
                                "dl_sys_ms_per_MB": 1e3 * (p1[1] - p0[1]) / mb,
                                "machine_ms_per_MB": 1e3 * (m1[0] - m0[0] + m1[1] - m0[1]) / mb,
                            })
                    for hop in hops.values():
                        tc.clear(hop)
        finally:
            server.stop()
    print(f"\n{args.net}, data plane {plane}, {args.seconds:g} s per transfer; medians of "
          f"n = {args.n}")
    for (arm, d), rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"  {arm:10} {d:4}  " + "  ".join(f"{k} {v:7.2f}" for k, v in med.items()))
    for d in ("down", "up"):
        added = [a["machine_ms_per_MB"] - b["machine_ms_per_MB"]
                 for a, b in zip(rows[("delay line", d)], rows[("tbf only", d)], strict=True)]
        print(f"  machine CPU the delay line adds, {d}: {statistics.median(added):.1f} ms per MB")
    mi = machine_info()
    print(f"machine: {mi.get('cpu')} x {mi.get('cores')}, load {[round(x, 2) for x in load0]} "
          f"-> {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
