"""The delay line run on the C data plane (:mod:`.dataplane`): what stays in Python.

:func:`run_c` replaces :meth:`.delayline.DelayLine.run` when the library builds: the C loop runs
in a thread (ctypes releases the GIL) and handles every packet; this thread draws each class's
delays and loss decisions from the same seeded models (:mod:`.models`) into the C rings, keeps
the heartbeat and status file, applies reloads (SIGHUP) and stops on SIGTERM. The status has
the same counters as the Python loop's, plus ``underruns`` (packets that met an empty ring).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .dataplane import Counters, load
from .nfq import enable_rx_stamps

if TYPE_CHECKING:
    from .delayline import DelayClass, DelayLine

FIRST = 2048  # draws per ring at a (re)configuration; top-ups fill the rest
PER_TICK = 4096  # at most this many draws per ring per top-up (a 100-client start stays short)
COUNTERS = ("seen", "passed", "held_total", "held_now", "max_held", "dropped_loss",
            "released_now", "stamped", "underruns", "dropped_rate", "unparsed", "late_sum_s",
            "late_max_s", "early_max_s")


def _delays(c: DelayClass, n: int) -> tuple[Any, int]:
    if c.delay.j <= 0 or n <= 0:
        return None, 0
    sample = c.delay.sample
    return (ctypes.c_double * n)(*[sample() for _ in range(n)]), n


def _losses(c: DelayClass, n: int) -> tuple[Any, int]:
    if c.loss.p <= 0 or n <= 0:
        return None, 0
    lost = c.loss.lost
    return (ctypes.c_uint8 * n)(*[lost() for _ in range(n)]), n


class Refill:
    """Tops the draw rings up a slice at a time, so that the heartbeat keeps its beat.

    Why: a top-up of every ring of a 100-client cell (200 classes, up to ``PER_TICK`` draws
    each) is seconds of Python; in one piece, on a machine loaded by the cell's start, the
    status went unwritten for longer than the parent's staleness limit (2 s), and the cell
    failed with "heartbeat is 2.7 s old". A round (:meth:`start`) visits every class once,
    from where the last round stopped; :meth:`step` fills classes for at most ``budget_s``."""

    def __init__(self, n: int, fill: Callable[[int], None], budget_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.n, self.fill, self.budget_s, self.clock = n, fill, budget_s, clock
        self.cursor = 0  # the class the next fill starts at
        self.left = 0  # classes this round has still to visit

    def start(self) -> None:
        """Begin a round (again, if one is under way: every ring may have dropped since)."""
        self.left = self.n

    @property
    def busy(self) -> bool:
        return self.left > 0

    def step(self) -> None:
        end = self.clock() + self.budget_s
        while self.left > 0:
            self.fill(self.cursor)
            self.cursor = (self.cursor + 1) % self.n
            self.left -= 1
            if self.clock() >= end:
                break


def run_c(line: DelayLine) -> int:
    """Run ``line`` on the C data plane until SIGTERM/SIGINT or the parent's death. Raises
    :class:`~.dataplane.DataPlaneUnavailable` (before touching any queue) if it cannot load."""
    lib = load()
    queues = list(line.classes)
    h = lib.dl_new(len(queues), line.batch_s, line.heartbeat_s)
    if not h:
        raise MemoryError("dl_new")

    def configure(i: int, c: DelayClass) -> None:
        dv, dn = _delays(c, FIRST)
        lv, ln = _losses(c, FIRST)
        rate = c.spec.rate_mbit * 1e6 / 8 if c.spec.rate_mbit is not None else 0.0
        lib.dl_class_config(h, i, c.delay.mu, int(c.delay.j > 0), int(c.loss.p > 0),
                            int(c.spec.reorder), dv, dn, lv, ln, rate, c.spec.limit_bytes,
                            c.spec.mtu)

    def top_up(i: int) -> None:
        c = line.classes[queues[i]]
        if c.delay.j > 0:
            dv, dn = _delays(c, min(PER_TICK, lib.dl_space(h, i, 0)))
            if dn:
                lib.dl_feed_delay(h, i, dv, dn)
        if c.loss.p > 0:
            lv, ln = _losses(c, min(PER_TICK, lib.dl_space(h, i, 1)))
            if ln:
                lib.dl_feed_loss(h, i, lv, ln)

    refill = Refill(len(queues), top_up)

    counters = (Counters * len(queues))()
    transport = (ctypes.c_uint64 * 3)()
    ring = lib.dl_ring_size()

    def snapshot() -> None:
        lib.dl_snapshot(h, counters, transport)
        for i, q in enumerate(queues):
            c = line.classes[q]
            for name in COUNTERS:
                setattr(c, name, getattr(counters[i], name))
        line.wakeups = int(transport[0])
        line.c_transport = {"dataplane": "c", "ring": ring, "recv_overruns": int(transport[1]),
                            "verdict_errors": int(transport[2]),
                            "underruns": sum(int(counters[i].underruns)
                                             for i in range(len(queues)))}

    for i, q in enumerate(queues):
        c = line.classes[q]
        lib.dl_class_init(h, i, q, c.max_len, int(line.gso.get(q, True)))
        configure(i, c)
    lib.dl_set_batch(h, int(line.batch_ok))
    rfd = line.on_signals()
    stamps = enable_rx_stamps()
    if lib.dl_open(h, line.sock_len) != 0:
        line.error = f"data plane: {lib.dl_error(h).decode()}"
        print(line.error, file=sys.stderr)
        lib.dl_close(h)
        stamps.close()
        line.write_status(ready=False, stopped=True)
        return 1
    result: list[int] = []
    loop = threading.Thread(target=lambda: result.append(
        lib.dl_run(h, line.rt_priority, line.nice)), name="dataplane", daemon=True)
    loop.start()
    snapshot()
    line.write_status(ready=True)
    next_beat = time.monotonic() + line.heartbeat_s
    last_wakeups, last_progress = line.wakeups, time.monotonic()
    lowfd = lib.dl_low_fd(h)
    refill.start()  # the rest of the first fill
    try:
        while not line.stop:
            # woken by a signal, by the loop when a ring is half empty (half a ring is >= 0.4 s
            # of a 20k packets/s class), or for the heartbeat: nothing polls in between, but
            # a top-up under way goes on at once
            wait = 0.0 if refill.busy else max(0.0, next_beat - time.monotonic())
            ready, _, _ = select.select([rfd, lowfd], [], [], wait)
            if rfd in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(rfd, 512):
                        pass
            if line.reload:
                changed = line.do_reload()
                if not line.error:  # else the old parameters and draws go on
                    for i, q in enumerate(queues):
                        if q in changed:
                            configure(i, line.classes[q])
                    lib.dl_set_batch(h, int(line.batch_ok))
                    refill.start()
                snapshot()
                line.write_status(ready=True)
            if lowfd in ready:
                lib.dl_low_reset(h)  # re-armed first: a ring that drops during the top-up signals
                refill.start()
            if refill.busy:
                refill.step()
            if not loop.is_alive():
                line.error = f"data plane loop ended: {lib.dl_error(h).decode() or 'no error'}"
                break
            now = time.monotonic()
            if now >= next_beat:
                if os.getppid() != line.parent_pid:
                    line.error = "parent died"
                    break
                snapshot()
                if line.wakeups != last_wakeups:
                    last_wakeups, last_progress = line.wakeups, now
                elif now - last_progress > 5 * line.heartbeat_s:  # it wakes every beat at least
                    line.error = f"data plane stalled for {now - last_progress:.1f} s"
                line.write_status(ready=True)
                next_beat = now + line.heartbeat_s
    finally:
        lib.dl_stop(h)  # the loop releases every held packet before it returns
        loop.join(5.0)
        snapshot()
        if not loop.is_alive():
            lib.dl_close(h)
        stamps.close()
        line.write_status(ready=False, stopped=True)
    return 1 if result and result[0] != 0 else 0  # the C loop's own failure: a failed exit
