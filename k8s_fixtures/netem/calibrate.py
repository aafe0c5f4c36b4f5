"""Calibration: measure what a profile really does on a live topology, next to its targets.

Per profile, on three client pods and one server pod (a fresh topology ``ztdl-<random>`` unless
given links; the client links are measured at once, see :func:`calibrate_links`): loss per
direction from UDP probes (large sample, binomial 95% interval), the
one-way delay distribution per direction from widely spaced UDP probes (median and IQR against
the configured model), TCP request/response RTT (p50 within max(2 ms, 3%) of the profile RTT,
p99 and std reported), bulk TCP throughput per direction measured after slow start (Ethernet
rate within 10% of the configured rate; with loss switched off for lossy profiles, since no
TCP can fill a lossy 50 ms path), and the delay line's kernel queue drops (must be 0).
The result is a dataclass that serialises to JSON for a matrix run to store.

Delay, jitter and RTT are measured in ``Sizes.passes`` passes spread over the calibration
(separated by the loss and bulk steps) and judged on the median of the per-pass figures, each
pass listed in the figure's note: on a shared machine a disturbance of a few seconds (another
tenant's burst) then moves one pass, not the verdict, and the table still shows it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k8s_fixtures.proc import die_with_parent

from . import tc
from .models import DelaySampler
from .overlay import LinkLike, NetemHandle, apply, class_spec
from .probe import one_way_ms
from .process import PKG_ROOT
from .profiles import WIRE_PER_PAYLOAD, Profile
from .stats import binom_interval, percentile, std

if TYPE_CHECKING:
    from k8s_fixtures.local.state import StateDir
    from k8s_fixtures.local.topology import Node

PROBE_PORT = 5201


@dataclass(frozen=True)
class Sizes:
    """Sample sizes: enough for the targets on a noisy 2-core machine, small enough for CI."""

    passes: int = 3
    rtt_n: int = 100  # per pass
    rtt_max_conns: int = 8
    delay_n: int = 200  # per pass
    loss_n: int = 3000
    loss_interval_ms: float = 0.5
    bulk_min_warm_s: float = 0.5
    bulk_min_window_s: float = 2.0


@dataclass(frozen=True)
class Figure:
    """One measured figure next to its target; ``passed`` is None for figures reported only."""

    name: str
    measured: float | None
    target: str
    passed: bool | None
    unit: str = ""
    n: int = 0
    note: str = ""


@dataclass
class CalibrationResult:
    """Everything a matrix run stores about one profile's calibration."""

    profile: str
    mechanism: str
    figures: list[Figure] = field(default_factory=list)
    profile_data: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    duration_s: float = 0.0
    delayline_counters: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(f.passed is not False for f in self.figures)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            cc = f.read().strip()
    except OSError:
        cc = "?"
    return {"host": platform.node(), "kernel": platform.release(), "cpu": cpu,
            "cores": os.cpu_count(), "loadavg": os.getloadavg(), "tcp_cc": cc}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PKG_ROOT), env.get("PYTHONPATH")) if p)
    return env


PROBE_NICE = -5  # the instrument: above ordinary load, below the delay line (-10)


def probe_cmd(netns: str, *args: str) -> list[str]:
    nice = ["nice", "-n", str(PROBE_NICE)] if os.geteuid() == 0 else []
    return ["ip", "netns", "exec", netns, *nice, sys.executable, "-m",
            "k8s_fixtures.netem.probe", *args]


def run_probe(netns: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    p = subprocess.run(probe_cmd(netns, *args), capture_output=True, text=True,
                       timeout=timeout, env=_env(), preexec_fn=die_with_parent)
    if p.returncode != 0:
        raise RuntimeError(f"probe {' '.join(args)} in {netns}: {p.stderr.strip()[-500:]}")
    out: dict[str, Any] = json.loads(p.stdout)
    return out


class ProbeServer:
    """The probe server process in the server pod (started and stopped by PID)."""

    def __init__(self, netns: str, port: int = PROBE_PORT) -> None:
        self.proc = subprocess.Popen(probe_cmd(netns, "server", "--port", str(port)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                                     start_new_session=True, preexec_fn=die_with_parent)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r and self.proc.stdout.readline().strip() == b"READY":
                return
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"probe server in {netns} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def model_quantiles(profile: Profile, direction: str, n: int = 20000) -> tuple[float, float]:
    """(median, IQR) in ms of the configured one-way delay model, by simulating it."""
    s = DelaySampler(class_spec(profile, direction), random.Random(12345))
    xs = [s.sample() * 1e3 for _ in range(n)]
    return percentile(xs, 50), percentile(xs, 75) - percentile(xs, 25)


def goodput_mbit(timeline: list[list[float]], warm_s: float, bin_s: float
                 ) -> tuple[float, float, float]:
    """(steady goodput, mean goodput, window s) in Mbit/s after ``warm_s`` from the first byte.

    Steady goodput is the median over ``bin_s`` bins: the receiving application sees data in
    jumps when a retransmission fills a hole (out-of-order data is held by the kernel), which
    would bias a two-point estimate by up to a window of data; bins are robust to that.
    """
    if len(timeline) < 3:
        return 0.0, 0.0, 0.0
    t0 = timeline[0][0]
    pts = [p for p in timeline if p[0] >= t0 + warm_s] or timeline[-2:]
    dt = pts[-1][0] - pts[0][0]
    avg = (pts[-1][1] - pts[0][1]) * 8 / dt / 1e6 if dt > 0 else 0.0
    rates: list[float] = []
    i = 0
    for j in range(1, len(pts)):
        if pts[j][0] - pts[i][0] >= bin_s:
            rates.append((pts[j][1] - pts[i][1]) * 8 / (pts[j][0] - pts[i][0]) / 1e6)
            i = j
    return (percentile(rates, 50) if rates else avg), avg, dt


# ------------------------------------------------------------------------------- steps

def _loss_figures(profile: Profile, res: dict[str, Any]) -> list[Figure]:
    probes = res["probes"]
    n_up = len(probes)
    got_up = [p for p in probes if p["srv"] is not None]
    got_back = [p for p in got_up if p["back"] is not None]
    figs = []
    for name, n, lost, d in (("loss up", n_up, n_up - len(got_up), profile.up),
                             ("loss down", len(got_up), len(got_up) - len(got_back),
                              profile.down)):
        lo, hi = binom_interval(n, d.loss_pct / 100)
        figs.append(Figure(name, 100.0 * lost / n if n else None,
                           f"{d.loss_pct:g}% (count in [{lo}, {hi}] of {n}, binomial 95%)",
                           lo <= lost <= hi, "%", n, f"{lost} lost, UDP probes"))
    return figs


def _pass_note(values: list[float], n: list[int]) -> str:
    return (f"median of {len(values)} passes: " + ", ".join(f"{v:.2f}" for v in values)
            + f" (n {'/'.join(map(str, n))})")


def _delay_figures(profile: Profile, passes: list[dict[str, Any]]) -> list[Figure]:
    """Per direction: the median over passes of the per-pass median and IQR."""
    per_pass = [one_way_ms(r["probes"]) for r in passes]
    figs = []
    for k, name in enumerate(("up", "down")):
        samples = [p[k] for p in per_pass if len(p[k]) >= 20]
        n = sum(len(xs) for xs in samples)
        if not samples:
            figs.append(Figure(f"delay {name} p50", None, "enough probes", False, "ms", n))
            continue
        med, iqr = model_quantiles(profile, name)
        meds = [percentile(xs, 50) for xs in samples]
        iqrs = [(percentile(xs, 75) - percentile(xs, 25)) / 1.349 for xs in samples]
        sizes = [len(xs) for xs in samples]
        m_med, m_iqr = percentile(meds, 50), percentile(iqrs, 50)
        tol = max(1.0, 0.03 * med)
        figs.append(Figure(f"delay {name} p50", m_med, f"{med:.2f} +- {tol:.2f}",
                           abs(m_med - med) <= tol, "ms", n, _pass_note(meds, sizes)))
        jt = max(0.3, 0.2 * iqr / 1.349)
        pooled = [x for xs in samples for x in xs]
        figs.append(Figure(f"jitter {name} IQR/1.349", m_iqr,
                           f"{iqr / 1.349:.2f} +- {jt:.2f}", abs(m_iqr - iqr / 1.349) <= jt,
                           "ms", n, f"{_pass_note(iqrs, sizes)}; std {std(pooled):.2f} ms"))
    return figs


def _rtt_figures(profile: Profile, passes: list[dict[str, Any]]) -> list[Figure]:
    """p50: the median over passes of the per-pass p50; p99 and std over all samples."""
    errors = [e for r in passes for e in r.get("errors", [])]
    samples = [r["rtt_ms"] for r in passes if r["rtt_ms"]]
    xs = [x for s in samples for x in s]
    if not samples or errors:
        return [Figure("rtt p50", None, "samples", False, "ms", len(xs), "; ".join(errors))]
    rtt = profile.rtt_ms
    tol = max(2.0, 0.03 * rtt)
    p50s = [percentile(s, 50) for s in samples]
    p50 = percentile(p50s, 50)
    return [Figure("rtt p50", p50, f"{rtt:.2f} +- {tol:.2f}", abs(p50 - rtt) <= tol, "ms",
                   len(xs), f"TCP request/response; {_pass_note(p50s, [len(s) for s in samples])}"),
            Figure("rtt p99", percentile(xs, 99), "report", None, "ms", len(xs)),
            Figure("rtt jitter (std)", std(xs), "report", None, "ms", len(xs))]


def _bulk_figure(profile: Profile, direction: str, res: dict[str, Any], warm_s: float,
                 bin_s: float) -> Figure:
    g, avg, window = goodput_mbit(res["timeline"], warm_s, bin_s)
    wire = g * WIRE_PER_PAYLOAD
    rate = profile.direction(direction).rate_mbit
    note = (f"goodput {g:.2f} Mbit/s (median of {bin_s:.2f} s bins; mean {avg:.2f}) over "
            f"{window:.1f} s after {warm_s:.1f} s warm-up")
    if profile.direction(direction).loss_pct > 0:
        note += "; loss suspended"
    if rate is None:
        return Figure(f"throughput {direction}", wire, "report (no rate limit)", None,
                      "Mbit/s", 1, note)
    return Figure(f"throughput {direction}", wire, f"{rate:g} +- 10%",
                  abs(wire - rate) <= 0.1 * rate, "Mbit/s", 1, note)


def _bulk(profile: Profile, handle: NetemHandle, server_ip: str,
          transfers: list[tuple[str, str]], seconds: float, warm: float, bin_s: float
          ) -> dict[str, Figure]:
    """Bulk transfers ``(netns, direction)`` at once, each on its own link, with the
    profile's loss suspended for them on lossy profiles."""
    lossy = profile.up.loss_pct > 0 or profile.down.loss_pct > 0
    if lossy:
        handle.change(profile.without_loss())
    try:
        got = _at_once([partial(run_probe, ns, "bulk", "--host", server_ip, "--direction", d,
                                "--seconds", f"{seconds:.2f}", timeout=seconds + 60)
                        for ns, d in transfers])
    finally:
        if lossy:
            handle.change(profile)
    return {d: _bulk_figure(profile, d, r, warm, bin_s)
            for (_, d), r in zip(transfers, got, strict=True)}


def _at_once(jobs: list[Callable[[], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run probe jobs each in its own thread (each on its own link); results in order."""
    if len(jobs) == 1:
        return [jobs[0]()]
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="ztdl-probe") as ex:
        return [f.result() for f in [ex.submit(j) for j in jobs]]


def calibrate_links(profile: Profile, handle: NetemHandle, client: LinkLike, server_ip: str,
                    sizes: Sizes = Sizes(), others: Sequence[LinkLike] = ()
                    ) -> CalibrationResult:
    """Measure ``profile`` on a client link where ``handle`` already applies it and a
    :class:`ProbeServer` listens at ``server_ip`` (port 5201 TCP+UDP, 5202 UDP). Loss is
    measured first, so its random draws are the first ones of the class generators
    (reproducible for a given profile seed on a fresh handle).

    With two ``others`` (client links under the same profile) the three links are measured
    at once, each figure's passes still at different moments: (loss on the first, a delay
    pass on the second, an RTT pass on the third), (the bulk transfers, up on the first and
    down on the second, with a delay pass on the third), (a delay pass, an RTT pass), (an RTT
    pass). The links' classes are apart, so no probe queues behind another's packet; the
    delay line serves all three, as it serves every client of a cell. About half the time."""
    t_start = time.time()
    res = CalibrationResult(profile.name, handle.mechanism, profile_data=profile.to_dict(),
                            machine=machine_info(), started=t_start)
    a = client.netns
    max_delay = max(profile.up.delay_ms + 5 * profile.up.jitter_std_ms,
                    profile.down.delay_ms + 5 * profile.down.jitter_std_ms)
    drain = f"{1.0 + 3 * max_delay / 1e3:.2f}"
    spread = max(profile.up.jitter_std_ms, profile.down.jitter_std_ms)
    interval = max(2.0, 4 * spread)
    # Requests leave >= 6 sigma apart (no FIFO interaction between probes); enough
    # connections in parallel to fill that grid.
    spacing = max(2.0, 6 * spread)
    conns = min(sizes.rtt_max_conns, int((profile.rtt_ms + 6 * spread) / spacing) + 1)
    got: dict[str, list[dict[str, Any]]] = {"loss": [], "udp": [], "rtt": []}

    def job(kind: str, ns: str) -> Callable[[], dict[str, Any]]:
        args = {"loss": ["udp", "--n", str(sizes.loss_n), "--interval-ms",
                         str(sizes.loss_interval_ms), "--drain-s", drain],
                "udp": ["udp", "--n", str(sizes.delay_n), "--interval-ms", str(interval),
                        "--drain-s", drain],
                "rtt": ["rtt", "--n", str(sizes.rtt_n), "--conns", str(conns),
                        "--spacing-ms", str(spacing)]}[kind]

        def run() -> dict[str, Any]:
            r = run_probe(ns, args[0], "--host", server_ip, *args[1:])
            got[kind].append(r)
            return r
        return run

    rtt_s = profile.rtt_ms / 1e3
    warm = max(sizes.bulk_min_warm_s, 10 * rtt_s)
    seconds = warm + max(sizes.bulk_min_window_s, 15 * rtt_s)
    if profile.is_null:  # nothing installed, no rate to check: the throughput is only reported
        warm, seconds = sizes.bulk_min_warm_s / 2, sizes.bulk_min_warm_s
    bin_s = max(0.25, 2 * rtt_s)
    passes = max(1, sizes.passes)
    bulk: dict[str, Figure] = {}
    steps: list[list[Any]]  # each step's probe jobs and (netns, direction) bulk transfers
    if len(others) >= 2:
        nb, nc = others[0].netns, others[1].netns
        more_udp, more_rtt = max(0, passes - 2), passes - 1
        steps = [[job("loss", a), job("udp", nb), job("rtt", nc)],
                 [(a, "up"), (nb, "down"), *([job("udp", nc)] if passes > 1 else [])]]
        steps += [[*([job("udp", a)] if i < more_udp else []),
                   *([job("rtt", nb if i % 2 == 0 else nc)] if i < more_rtt else [])]
                  for i in range(max(more_udp, more_rtt))]
    else:
        # loss, pass, bulk up, pass, bulk down, pass (with 3 passes)
        steps = [[job("loss", a)]] + [[job("udp", a)], [job("rtt", a)]] * passes
        steps.insert(min(3, len(steps)), [(a, "up")])
        steps.insert(min(6, len(steps)), [(a, "down")])
    for step in steps:
        transfers = [x for x in step if isinstance(x, tuple)]
        jobs = [x for x in step if not isinstance(x, tuple)]
        if transfers:
            jobs.append(partial(_bulk, profile, handle, server_ip, transfers, seconds, warm,
                                bin_s))
        done = _at_once(jobs)
        if transfers:
            bulk.update(done[-1])
    res.figures += _loss_figures(profile, got["loss"][0])
    delays, rtts = got["udp"], got["rtt"]
    res.figures += _delay_figures(profile, delays)
    res.figures += _rtt_figures(profile, rtts)
    res.figures += [bulk["up"], bulk["down"]]
    st = handle.status()
    res.figures.append(Figure("queue drops", float(st.kernel_queue_drops), "0",
                              st.kernel_queue_drops == 0, "packets", 1,
                              "NFQUEUE overflow + netlink drops"))
    alive = st.alive or handle.mechanism == "none"
    res.figures.append(Figure("delay line alive", 1.0 if alive else 0.0, "1", alive, "",
                              1, st.reason))
    for q, c in sorted(st.classes.items()):
        res.figures.append(Figure(f"release lateness q{q}", c.get("late_mean_us"), "report",
                                  None, "us", int(c.get("held_total", 0)),
                                  f"{c.get('label')}: max {c.get('late_max_us', 0):.0f} us"))
    res.delayline_counters = {"classes": st.classes}
    if handle.mechanism == "netem":
        drops = [tc.qdisc_drops(h) for ls in handle.links
                 for h in (ls.up_hop(), ls.down_hop(handle.node_netns))]
        res.delayline_counters["tbf_drops"] = drops
        if any(d is not None for d in drops):
            res.figures.append(Figure("tbf drops", float(sum(d or 0 for d in drops)), "report",
                                      None, "packets", 1, "rate limiter: how TCP finds the rate"))
    elif any(profile.direction(x).rate_mbit is not None for x in ("up", "down")):
        drops_rate = sum(int(c.get("dropped_rate", 0)) for c in st.classes.values())
        res.figures.append(Figure("rate drops", float(drops_rate), "report", None, "packets", 1,
                                  "the delay line's byte limit: how TCP finds the rate"))
        # a packet whose headers the delay line could not read was charged a bare frame:
        # the rate would not hold for it
        unparsed = sum(int(c.get("unparsed", 0)) for c in st.classes.values())
        res.figures.append(Figure("unparsed packets", float(unparsed), "0", unparsed == 0,
                                  "packets", 1, "rated packets without a readable IP length"))
    res.duration_s = time.time() - t_start
    return res


@contextlib.contextmanager
def private_topology(prefix: str | None = None, state_root: Path | None = None
                     ) -> Iterator[tuple[Node, StateDir]]:
    """A node namespace ``<prefix>`` (default ``ztdl-<random>``) recorded in the state root.

    The topology is recorded as the local backend records a cluster (``<root>/<prefix>/``,
    locked by this process, every namespace listed before it is created), so a harness killed
    mid-calibration leaves nothing for good: the next cluster start, the next calibration or
    ``ztfl cluster clean`` purges it. Stale records are purged here first, as a cluster start
    does. The record goes on exit, unless a namespace could not be deleted (then ``clean``
    finishes the job).
    """
    from k8s_fixtures.local import state
    from k8s_fixtures.local.topology import Node, netns_list

    root = state_root or state.default_root()
    name = prefix or f"ztdl-{secrets.token_hex(3)}"
    state.clean_stale(root)
    st = state.StateDir(root, name, state.Record(name, "root", os.getpid()))
    node = Node(prefix=name, on_netns=lambda ns: st.add(netns=ns))
    try:
        node.create()
        yield node, st
    finally:
        try:
            if st.record.netns:  # else the node's name was taken: nothing here is ours
                node.destroy()
        finally:
            st.close(remove=not set(st.record.netns) & set(netns_list()))


def calibrate(profile: Profile, *, mechanism: str = "auto", sizes: Sizes = Sizes(),
              prefix: str | None = None, state_root: Path | None = None
              ) -> CalibrationResult:
    """Build a private topology (``ztdl-<random>``, recorded under ``state_root``: see
    :func:`private_topology`), apply ``profile``, measure, tear down."""
    with private_topology(prefix, state_root) as (node, st):
        server: ProbeServer | None = None
        handle: NetemHandle | None = None
        try:
            srv = node.add_pod("srv")
            clients = [node.add_pod(name) for name in ("cli", "cli2", "cli3")]
            server = ProbeServer(srv.netns)
            st.add(pid=server.proc.pid)
            handle = apply(profile, node.netns, [(c, srv) for c in clients],
                           mechanism=mechanism)
            return calibrate_links(profile, handle, clients[0], srv.ip, sizes, clients[1:])
        finally:
            try:
                if handle is not None:
                    handle.stop()
            finally:
                if server is not None:
                    server.stop()


def format_table(results: list[CalibrationResult]) -> str:
    """A plain-text table: one row per figure, grouped by profile."""
    rows = [("profile", "mech", "figure", "measured", "target", "n", "verdict", "note")]
    for r in results:
        for f in r.figures:
            m = "-" if f.measured is None else f"{f.measured:.3f} {f.unit}".strip()
            v = {True: "PASS", False: "FAIL", None: "info"}[f.passed]
            rows.append((r.profile, r.mechanism, f.name, m, f.target, str(f.n), v, f.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    out = []
    for row in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True))
                   + "  " + row[-1])
    return "\n".join(out)
