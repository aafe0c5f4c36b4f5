"""The userspace delay line: a process in the node namespace serving NFQUEUE queues.

Started by :mod:`.process` as ``python -m k8s_fixtures.netem.delayline CONFIG.json`` inside the
node namespace. Each queue is one delay class (one direction of one client link). A packet is
dropped by the loss model, goes through the class's rate (:mod:`.shaper`: serialised at the
link's rate, dropped at its byte limit), and is held until its due time and then accepted.

Two loops do this. By default (config ``dataplane``: ``auto``, from ``ZTFL_DELAYLINE_DATAPLANE``)
the per-packet work runs in C (:mod:`.cloop`, :mod:`.dataplane`), which halves the delay line's
CPU during FL rounds; this process then keeps the heartbeat and draws every delay and loss
decision from the same seeded models, so a seed gives the same packets the same fate on both
loops. Where the C library cannot be built, :meth:`DelayLine.run_python` below runs instead
(one thread, one ``select`` loop, no locks) and the status says why (``transport``).

Cost (issue 14 item 5): the transport is :mod:`.nfq`, our own netlink client, for three
levers ``netfilterqueue`` lacks. GSO/GRO super-packets are queued whole (``F_GSO``), not as
MSS-sized segments (the delay line shapes the rate itself, so no tbf cuts them up first); a
FIFO class releases its due packets with one batch verdict; and only the packet id, the
kernel's receive stamp and the first 128 bytes (the headers the rate counts frames from) are
read. The stamp (``NFQA_TIMESTAMP``, switched on by :func:`.nfq.enable_rx_stamps`) is when the
packet entered the bridge port, so a packet's delay counts from its arrival even when it is
read later. That
lets the loop batch in time: after a pass that moved packets it sleeps ``batch_us`` (default
1000 us) before reading arrivals again, and each pass releases every packet due within
``batch_us / 2`` of now (the wait only when every class delays by two windows or more:
a zero delay stays zero). A lone packet is still released on its timer; on a busy link each
release is off by at most half the window either way (counters ``late_max_us`` and
``early_max_us``), and there are at most ~1/window passes per second instead of two per
packet. Packets without a stamp count from when they were read.

Timers: the process runs SCHED_RR priority 1 when it may (config ``rt_priority``; the parent
sets it from ``ZTFL_DELAYLINE_RT``, default 1, 0 = off) and at nice -10 otherwise. On a loaded
2-core machine this cut the mean release lateness from ~220 us to ~50 us and the worst from
~7 ms to ~2 ms. The loop blocks in ``select`` when idle, and the kernel's RT throttling
(sched_rt_runtime_us) still leaves CPU to everything else if it ever saturates.

Liveness: the process rewrites a JSON status file (pid, heartbeat time, counters, kernel queue
drops) every ``heartbeat_s``; SIGHUP reloads the class parameters from the config file (profile
changes; a class whose parameters are unchanged keeps its draws); SIGTERM releases every held
packet and exits. It exits by itself if its parent dies.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import select
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .models import ClassSpec, DelaySampler, LossProcess, class_rngs
from .nfq import NfQueue, enable_rx_stamps
from .shaper import Shaper, frame_bytes

PROC_QUEUES = "/proc/self/net/netfilter/nfnetlink_queue"


@dataclass
class DelayClass:
    """Runtime state and counters of one queue."""

    queue: int
    label: str
    spec: ClassSpec
    max_len: int
    delay: DelaySampler = field(init=False)
    loss: LossProcess = field(init=False)
    shaper: Shaper | None = None  # the rate, when the class has one
    last_due: float = 0.0
    seen: int = 0
    passed: int = 0
    held_total: int = 0
    held_now: int = 0
    max_held: int = 0
    dropped_loss: int = 0
    dropped_rate: int = 0  # at the rate's byte limit (tail drop, as tbf's)
    unparsed: int = 0  # rated packets whose IP length could not be read (charged a bare frame)
    late_sum_s: float = 0.0
    late_max_s: float = 0.0
    early_max_s: float = 0.0  # the most negative lateness (released early, batch window)
    released_now: int = 0  # passed at once (not held) but counted in the lateness
    stamped: int = 0  # packets that carried the kernel's receive stamp
    underruns: int = 0  # C data plane: packets that found a draw ring empty (should stay 0)
    fifo: deque[tuple[float, int]] = field(default_factory=deque)  # (due, packet id), FIFO
    heap: list[tuple[float, int]] = field(default_factory=list)  # the same, reordering

    def __post_init__(self) -> None:
        self.configure(self.spec)

    def configure(self, spec: ClassSpec) -> None:
        d_rng, l_rng = class_rngs(spec.seed, self.queue)
        self.spec, self.delay, self.loss = spec, DelaySampler(spec, d_rng), LossProcess(spec, l_rng)
        if spec.rate_mbit is None:
            self.shaper = None
        else:  # a changed rate applies from the next packet; the link stays busy as it was
            busy = self.shaper.busy_until if self.shaper is not None else 0.0
            self.shaper = Shaper(spec.rate_mbit * 1e6 / 8, spec.limit_bytes, busy)

    def counters(self) -> dict[str, Any]:
        return {"label": self.label, "seen": self.seen, "passed": self.passed,
                "held_total": self.held_total, "held_now": self.held_now,
                "max_held": self.max_held, "dropped_loss": self.dropped_loss,
                "dropped_rate": self.dropped_rate, "unparsed": self.unparsed,
                "max_len": self.max_len, "spec": self.spec.__dict__,
                # lateness over the packets released so far (held, or passed at once when
                # already due on arrival): sums, so that two snapshots
                # difference exactly; the mean is for reading
                "released": self.released,
                "late_sum_us": 1e6 * self.late_sum_s,
                "late_mean_us": 1e6 * self.late_sum_s / max(1, self.released),
                "late_max_us": 1e6 * self.late_max_s, "early_max_us": 1e6 * self.early_max_s,
                "stamped": self.stamped, "underruns": self.underruns}

    @property
    def released(self) -> int:
        return self.held_total - self.held_now + self.released_now


def kernel_queue_stats(path: str = PROC_QUEUES) -> dict[int, dict[str, int]]:
    """Per-queue kernel counters: packets waiting, dropped (queue full), dropped (netlink)."""
    out: dict[int, dict[str, int]] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) >= 7:
            out[int(f[0])] = {"queue_total": int(f[2]), "queue_dropped": int(f[5]),
                              "user_dropped": int(f[6])}
    return out


def parse_classes(cfg: dict[str, Any]) -> list[tuple[int, str, int, ClassSpec]]:
    return [(int(c["queue"]), str(c["label"]), int(c["max_len"]), ClassSpec(**c["spec"]))
            for c in cfg["classes"]]


class DelayLine:
    """The event loop: bind queues, hold packet ids until their due time, release them."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        cfg = json.loads(config_path.read_text())
        self.status_path = Path(cfg["status_path"])
        self.heartbeat_s = float(cfg.get("heartbeat_s", 0.2))
        self.parent_pid = int(cfg.get("parent_pid", os.getppid()))
        self.sock_len = int(cfg.get("sock_len", 8 << 20))
        self.generation = int(cfg.get("generation", 0))
        self.nice = int(cfg.get("nice", -10))
        self.rt_priority = int(cfg.get("rt_priority", 0))
        self.gso = {int(c["queue"]): bool(c.get("gso", True)) for c in cfg["classes"]}
        self.batch_s = float(cfg.get("batch_us", 1000)) / 1e6
        self.classes = {q: DelayClass(q, label, spec, max_len)
                        for q, label, max_len, spec in parse_classes(cfg)}
        self.started = time.time()
        self.error = ""
        self.stop = False
        self.reload = False
        self.nfq: NfQueue | None = None
        self.wakeups = 0  # passes of the event loop (each a select call)
        # "auto": the C data plane when it builds (else this loop, saying why), "c", "python"
        self.dataplane = str(cfg.get("dataplane", "auto"))
        self.dataplane_note = ""
        self.c_transport: dict[str, Any] | None = None  # set by cloop.run_c
        self.batch_ok = self.batching()

    # -- packets -------------------------------------------------------------------------
    def on_packet(self, nfq: NfQueue, c: DelayClass, pid: int, arrived: float,
                  now: float, length: int = 0, header: int = 0) -> None:
        """Drop (loss model, then the rate's byte limit), pass at once (nothing held, already
        due) or hold one packet; it is through the rate (:mod:`.shaper`; its IP ``length``
        and ``header`` bytes) and its delay counts from ``arrived`` (the kernel's receive
        stamp, monotonic seconds)."""
        c.seen += 1
        if c.loss.lost():
            nfq.drop(c.queue, pid)
            c.dropped_loss += 1
            return
        if c.shaper is not None:
            if length == 0:
                c.unparsed += 1
            through = c.shaper.admit(arrived, frame_bytes(length, header, c.spec.mtu))
            if through is None:
                nfq.drop(c.queue, pid)
                c.dropped_rate += 1
                return
            arrived = through
        due = arrived + c.delay.sample()
        if c.spec.reorder:
            c.last_due = max(c.last_due, due)
        else:
            if due < c.last_due:
                due = c.last_due  # FIFO: never overtake the packet ahead
            c.last_due = due
        if due <= now and c.held_now == 0:
            nfq.accept(c.queue, pid)
            c.passed += 1
            late = now - due
            c.late_sum_s += late
            c.released_now += 1
            if late > c.late_max_s:
                c.late_max_s = late
            return
        if c.spec.reorder:
            heapq.heappush(c.heap, (due, pid))
        else:
            c.fifo.append((due, pid))
        c.held_now += 1
        c.held_total += 1
        if c.held_now > c.max_held:
            c.max_held = c.held_now

    def release_due(self, nfq: NfQueue, now: float, upto: float) -> int:
        """Accept every held packet due by ``upto`` (``now`` plus half the batch window): a
        FIFO class with one batch verdict (its due packets are the oldest ids it holds), a
        reordering class one by one. Returns how many were released."""
        total = 0
        for c in self.classes.values():
            n = 0
            fifo = c.fifo
            if fifo and fifo[0][0] <= upto:
                last = 0
                late = now - fifo[0][0]  # the oldest is the latest
                if late > c.late_max_s:
                    c.late_max_s = late
                while fifo and fifo[0][0] <= upto:
                    due, last = fifo.popleft()
                    late = now - due
                    c.late_sum_s += late
                    n += 1
                if late < c.early_max_s:  # the newest is the earliest
                    c.early_max_s = late
                nfq.accept_upto(c.queue, last)
            heap = c.heap
            while heap and heap[0][0] <= upto:
                due, pid = heapq.heappop(heap)
                nfq.accept(c.queue, pid)
                late = now - due
                c.late_sum_s += late
                c.late_max_s = max(c.late_max_s, late)
                c.early_max_s = min(c.early_max_s, late)
                n += 1
            if n:
                c.held_now -= n
                c.passed += n
                total += n
        return total

    def batching(self) -> bool:
        """Whether arrivals may wait for the next pass: only if every class delays by at
        least two windows (a zero or tiny delay would grow by up to a window)."""
        return all(c.spec.delay_ms / 1e3 >= 2 * self.batch_s for c in self.classes.values())

    def next_due(self) -> float:
        """The earliest due time of a held packet (infinity if none is held)."""
        due = float("inf")
        for c in self.classes.values():
            if c.fifo and c.fifo[0][0] < due:
                due = c.fifo[0][0]
            if c.heap and c.heap[0][0] < due:
                due = c.heap[0][0]
        return due

    def release_all(self) -> None:
        if self.nfq is not None:
            inf = float("inf")
            self.release_due(self.nfq, inf, inf)
            self.nfq.flush()

    # -- control -------------------------------------------------------------------------
    def do_reload(self) -> set[int]:
        """Apply the config file's class parameters; returns the queues whose parameters
        changed. A class whose spec is the same keeps its generators and draws: a change to
        one link (a schedule step, a partition) neither restarts the other links' random
        streams nor makes a 100-client cell redraw 200 rings at once."""
        self.reload = False
        changed: set[int] = set()
        try:
            cfg = json.loads(self.config_path.read_text())
            new = parse_classes(cfg)
            missing = [q for q, *_ in new if q not in self.classes]
            if missing:
                raise ValueError(f"reload names queues {missing} that are not bound")
            for q, _label, _ml, spec in new:
                if spec != self.classes[q].spec:
                    self.classes[q].configure(spec)
                    changed.add(q)
            self.batch_ok = self.batching()
            self.generation = int(cfg.get("generation", self.generation + 1))
            self.error = ""
        except Exception as e:  # keep running with the old parameters, report why
            self.error = f"reload failed: {e}"
        return changed

    def transport(self) -> dict[str, Any]:
        n = self.nfq
        out = {"gso": {str(q): g for q, g in self.gso.items()},
               "batch_us": 1e6 * self.batch_s, "wakeups": self.wakeups}
        if self.c_transport is not None:
            return {**out, **self.c_transport}
        return {**out, "dataplane": "python", "dataplane_note": self.dataplane_note,
                "recv_overruns": 0 if n is None else n.overruns,
                "verdict_errors": 0 if n is None else n.errors}

    def write_status(self, *, ready: bool, stopped: bool = False) -> None:
        st = {"pid": os.getpid(), "heartbeat": time.time(), "started": self.started,
              "ready": ready, "stopped": stopped, "generation": self.generation,
              "error": self.error,
              "held_now": sum(c.held_now for c in self.classes.values()),
              "transport": self.transport(),
              "classes": {str(q): c.counters() for q, c in self.classes.items()},
              "kernel": {str(q): v for q, v in kernel_queue_stats().items()
                         if q in self.classes}}
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(st))
        os.replace(tmp, self.status_path)

    # -- main loop -----------------------------------------------------------------------
    def run(self) -> int:
        """The C data plane (:mod:`.cloop`) unless configured off or unavailable here, else
        :meth:`run_python`."""
        if self.dataplane != "python":
            from .cloop import run_c
            from .dataplane import DataPlaneUnavailable

            try:
                return run_c(self)
            except DataPlaneUnavailable as e:
                if self.dataplane == "c":
                    self.error = f"C data plane required: {e}"
                    print(self.error, file=sys.stderr)  # the parent's start error quotes it
                    self.write_status(ready=False, stopped=True)
                    return 1
                self.dataplane_note = f"C data plane unavailable: {e}"
        return self.run_python()

    def on_signals(self) -> int:
        """SIGTERM/SIGINT stop the loop, SIGHUP asks for a reload; returns the descriptor a
        signal makes readable (``select`` on it to wake up)."""
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        os.set_blocking(rfd, False)
        signal.set_wakeup_fd(wfd)

        def on_term(_s: int, _f: Any) -> None:
            self.stop = True

        def on_hup(_s: int, _f: Any) -> None:
            self.reload = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        return rfd

    def run_python(self) -> int:
        rfd = self.on_signals()
        nfq = self.nfq = NfQueue(rcvbuf=self.sock_len)
        for q, c in self.classes.items():
            nfq.bind(q, c.max_len, gso=self.gso.get(q, True))
        stamps = enable_rx_stamps()
        nfd = nfq.fileno()
        with contextlib.suppress(OSError):  # timers matter here; best effort
            os.setpriority(os.PRIO_PROCESS, 0, int(self.nice))
        if self.rt_priority > 0:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(self.rt_priority))
        self.write_status(ready=True)
        next_beat = time.monotonic() + self.heartbeat_s
        mono, wall, classes, on_packet = time.monotonic, time.time, self.classes, self.on_packet
        window, half = self.batch_s, self.batch_s / 2
        busy_until = 0.0  # after a pass that moved packets: no wake-up before this
        shaped = any(c.shaper is not None for c in classes.values())  # read packet lengths
        try:
            while not self.stop:
                now = mono()
                moved = 0
                offset = wall() - now  # realtime stamp -> monotonic
                for q, pid, stamp, length, header in nfq.read(lengths=shaped):
                    moved += 1
                    cls = classes.get(q)
                    if cls is None:  # not ours: cannot happen on our own socket
                        nfq.accept(q, pid)
                        continue
                    arrived = stamp - offset
                    if now - 1.0 < arrived <= now:  # a receive stamp (not some other clock)
                        cls.stamped += 1
                    else:
                        arrived = now
                    on_packet(nfq, cls, pid, arrived, now, length, header)
                moved += self.release_due(nfq, now, now + half)
                nfq.flush()
                if now >= next_beat:
                    if os.getppid() != self.parent_pid:
                        self.error = "parent died"
                        break
                    self.write_status(ready=True)
                    next_beat = now + self.heartbeat_s
                if moved and self.batch_ok:
                    busy_until = now + window
                # right after a busy pass the next one is a window later, whatever falls due
                # meanwhile (released at most half a window late: the pass before released
                # all due within half a window) and whatever arrives (the kernel stamped it,
                # so its delay still counts from its arrival): a dense flow wakes the loop
                # once per window; a lone packet keeps its timer
                wake = min(next_beat, self.next_due())
                if now < busy_until:
                    readers = [rfd]
                    wake = busy_until
                else:
                    readers = [nfd, rfd]
                ready, _, _ = select.select(readers, [], [], max(wake - now, 0.0))
                self.wakeups += 1
                if rfd in ready:
                    while True:
                        try:
                            if not os.read(rfd, 512):
                                break
                        except BlockingIOError:
                            break
                if self.reload:
                    self.do_reload()
                    shaped = any(c.shaper is not None for c in classes.values())
                    self.write_status(ready=True)
        finally:
            self.release_all()
            nfq.close()
            stamps.close()
            self.write_status(ready=False, stopped=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m k8s_fixtures.netem.delayline CONFIG.json", file=sys.stderr)
        return 2
    prof_out = os.environ.get("ZTFL_DELAYLINE_PROFILE")  # a cProfile dump, for benchmarks
    if not prof_out:
        return DelayLine(Path(args[0])).run()
    import cProfile

    with cProfile.Profile() as prof:
        rc = DelayLine(Path(args[0])).run()
    prof.dump_stats(prof_out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
