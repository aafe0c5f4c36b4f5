"""The userspace delay line: a process in the node namespace serving NFQUEUE queues.

Started by :mod:`.mechanism` as ``python -m k8s_fixtures.netem.delayline CONFIG.json`` inside the
node namespace. Each queue is one delay class (one direction of one client link). A packet is
dropped by the loss model or held on a heap until its due time and then accepted; the verdict is
given after the callback returns (the Packet object is kept). One thread, one ``select`` loop:
no locks, and timers with microsecond resolution.

Timers: the process runs SCHED_RR priority 1 when it may (config ``rt_priority``; the parent
sets it from ``ZTFL_DELAYLINE_RT``, default 1, 0 = off) and at nice -10 otherwise. On a loaded
2-core machine this cut the mean release lateness from ~220 us to ~50 us and the worst from
~7 ms to ~2 ms. The loop blocks in ``select`` when idle, and the kernel's RT throttling
(sched_rt_runtime_us) still leaves CPU to everything else if it ever saturates.

Liveness: the process rewrites a JSON status file (pid, heartbeat time, counters, kernel queue
drops) every ``heartbeat_s``; SIGHUP reloads the class parameters from the config file (profile
changes); SIGTERM releases every held packet and exits. It exits by itself if its parent dies.
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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .models import ClassSpec, DelaySampler, LossProcess, class_rngs

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
    last_due: float = 0.0
    seen: int = 0
    passed: int = 0
    held_total: int = 0
    held_now: int = 0
    max_held: int = 0
    dropped_loss: int = 0
    late_sum_s: float = 0.0
    late_max_s: float = 0.0

    def __post_init__(self) -> None:
        self.configure(self.spec)

    def configure(self, spec: ClassSpec) -> None:
        d_rng, l_rng = class_rngs(spec.seed, self.queue)
        self.spec, self.delay, self.loss = spec, DelaySampler(spec, d_rng), LossProcess(spec, l_rng)

    def counters(self) -> dict[str, Any]:
        return {"label": self.label, "seen": self.seen, "passed": self.passed,
                "held_total": self.held_total, "held_now": self.held_now,
                "max_held": self.max_held, "dropped_loss": self.dropped_loss,
                "max_len": self.max_len, "spec": self.spec.__dict__,
                # lateness over the held packets released so far: sums, so that two snapshots
                # difference exactly; the mean is for reading
                "released": self.held_total - self.held_now,
                "late_sum_us": 1e6 * self.late_sum_s,
                "late_mean_us": 1e6 * self.late_sum_s / max(1, self.held_total - self.held_now),
                "late_max_us": 1e6 * self.late_max_s}


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
    """The event loop: bind queues, hold packets on a heap, release them when due."""

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
        self.classes = {q: DelayClass(q, label, spec, max_len)
                        for q, label, max_len, spec in parse_classes(cfg)}
        self.heap: list[tuple[float, int, Any, DelayClass]] = []
        self.seq = 0
        self.started = time.time()
        self.error = ""
        self.stop = False
        self.reload = False
        self.queues: list[Any] = []

    # -- packets -------------------------------------------------------------------------
    def callback_for(self, c: DelayClass) -> Any:
        heap, push, mono = self.heap, heapq.heappush, time.monotonic

        def on_packet(pkt: Any) -> None:
            now = mono()
            c.seen += 1
            if c.loss.lost():
                pkt.drop()
                c.dropped_loss += 1
                return
            due = now + c.delay.sample()
            if c.spec.reorder:
                c.last_due = max(c.last_due, due)
            else:
                if due < c.last_due:
                    due = c.last_due  # FIFO: never overtake the packet ahead
                c.last_due = due
            if due <= now and c.held_now == 0:
                pkt.accept()
                c.passed += 1
                return
            self.seq += 1
            push(heap, (due, self.seq, pkt, c))
            c.held_now += 1
            c.held_total += 1
            if c.held_now > c.max_held:
                c.max_held = c.held_now

        return on_packet

    def release_due(self, now: float) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            due, _, pkt, c = heapq.heappop(heap)
            pkt.accept()
            late = now - due
            c.late_sum_s += late
            if late > c.late_max_s:
                c.late_max_s = late
            c.held_now -= 1
            c.passed += 1

    def release_all(self) -> None:
        self.release_due(float("inf"))

    # -- control -------------------------------------------------------------------------
    def do_reload(self) -> None:
        self.reload = False
        try:
            cfg = json.loads(self.config_path.read_text())
            new = parse_classes(cfg)
            missing = [q for q, *_ in new if q not in self.classes]
            if missing:
                raise ValueError(f"reload names queues {missing} that are not bound")
            for q, _label, _ml, spec in new:
                self.classes[q].configure(spec)
            self.generation = int(cfg.get("generation", self.generation + 1))
            self.error = ""
        except Exception as e:  # keep running with the old parameters, report why
            self.error = f"reload failed: {e}"

    def write_status(self, *, ready: bool, stopped: bool = False) -> None:
        st = {"pid": os.getpid(), "heartbeat": time.time(), "started": self.started,
              "ready": ready, "stopped": stopped, "generation": self.generation,
              "error": self.error, "held_now": len(self.heap),
              "classes": {str(q): c.counters() for q, c in self.classes.items()},
              "kernel": {str(q): v for q, v in kernel_queue_stats().items()
                         if q in self.classes}}
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(st))
        os.replace(tmp, self.status_path)

    # -- main loop -----------------------------------------------------------------------
    def run(self) -> int:
        from netfilterqueue import COPY_META, NetfilterQueue

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
        fds: dict[int, Any] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for q, c in self.classes.items():
                nfq = NetfilterQueue()
                nfq.bind(q, self.callback_for(c), max_len=c.max_len, mode=COPY_META,
                         sock_len=self.sock_len)
                self.queues.append(nfq)
                fds[nfq.get_fd()] = nfq
        readers = [*fds, rfd]
        with contextlib.suppress(OSError):  # timers matter here; best effort
            os.setpriority(os.PRIO_PROCESS, 0, int(self.nice))
        if self.rt_priority > 0:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(self.rt_priority))
        self.write_status(ready=True)
        next_beat = time.monotonic() + self.heartbeat_s
        mono = time.monotonic
        try:
            while not self.stop:
                now = mono()
                self.release_due(now)
                if now >= next_beat:
                    if os.getppid() != self.parent_pid:
                        self.error = "parent died"
                        break
                    self.write_status(ready=True)
                    next_beat = now + self.heartbeat_s
                timeout = next_beat - now
                if self.heap:
                    timeout = min(timeout, self.heap[0][0] - now)
                ready, _, _ = select.select(readers, [], [], max(timeout, 0.0))
                for fd in ready:
                    if fd == rfd:
                        while True:
                            try:
                                if not os.read(rfd, 512):
                                    break
                            except BlockingIOError:
                                break
                    else:
                        fds[fd].run(block=False)
                if self.reload:
                    self.do_reload()
                    self.write_status(ready=True)
        finally:
            self.release_all()
            for nfq in self.queues:
                nfq.unbind()
            self.write_status(ready=False, stopped=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m k8s_fixtures.netem.delayline CONFIG.json", file=sys.stderr)
        return 2
    return DelayLine(Path(args[0])).run()


if __name__ == "__main__":
    sys.exit(main())
