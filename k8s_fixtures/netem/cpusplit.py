"""The delay line's CPU split by kernel call stack: its own work against the onward path of the
packets it releases, from ``perf record -a -g`` samples (benchmarks/bench_delayline_fl.py).

The delay line's process time (``/proc/<pid>/stat``) holds work that is not its own: a verdict
re-injects the packets it releases (``nfqnl_reinject``), and the kernel forwards them over the
bridge to the receiving pod and, at the verdict's bottom-half enable, runs their receive
softirq (IP, the receiving pod's TCP, waking its reader) in the delay line's context. Without
a delay line the sender's context runs that same path. Conversely, queueing a packet runs in
the sender's context (the FORWARD hook's rules, ``nf_queue``, the netlink message to the delay
line): work the delay line causes that its process time does not hold.

So, per sample: in the delay line's process, the stacks under ``nfqnl_reinject`` without a
softirq (the bridge forward, veth) and those whose softirq under it is ``net_rx_action`` (the
receive) are the onward path; everything else there is its own work, conservatively (a timer
softirq that happened to run at the verdict counts as its own). In any other process, a stack
under the bridge's FORWARD netfilter hook (``br_nf_forward_ip``: the delay line's rules and
its queueing, not the forward's continuation) is the delay line's too, as is such a stack in
its own process (a reply the onward path's TCP sent, queued for its link). The delay line's
process is the one that sends NFQUEUE verdicts: nothing else here does.

Not counted: the timer interrupts that wake the delay line for a pass. They run in hard
interrupt context with interrupts off, where a ``cpu-clock`` sample cannot land (samples of
hrtimer expiry here are all soft timers, such as TCP pacing's, whose work is the pods' own).

Samples are ``cpu-clock`` (a timer): in a VM a sample that falls while interrupts are off is
taken when they are back on, still under the same stack, so the split by ancestor holds.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ONWARD_FORWARD = "onward: bridge forward, veth"
ONWARD_RECEIVE = "onward: receive softirq (IP, TCP, wake the reader)"
ELSEWHERE = "elsewhere: FORWARD rules and queueing in the sender's context"
ONWARD = (ONWARD_FORWARD, ONWARD_RECEIVE)

_REINJECT = frozenset({"nfqnl_reinject", "nf_reinject"})
_VERDICT = frozenset({"nfqnl_recv_verdict_batch", "nfqnl_recv_verdict"})
_WAIT = frozenset({"do_sys_poll", "do_epoll_wait", "schedule", "__schedule",
                   "finish_task_switch", "do_nanosleep", "futex_wait"})
_HEADER = re.compile(r"^\s*(-?\d+)/(-?\d+)\s")


@dataclass(frozen=True)
class Stack:
    """One sample: process, thread and frames, innermost first (suffixes such as ``.part.0``
    cut off)."""

    pid: int
    tid: int
    frames: tuple[str, ...]


def parse(text: str) -> list[Stack]:
    """``perf script -F pid,tid,ip,sym`` output: a ``pid/tid`` line, then one frame a line."""
    out: list[Stack] = []
    head: tuple[int, int] | None = None
    frames: list[str] = []
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if head is not None:
                out.append(Stack(head[0], head[1], tuple(frames)))
            head, frames = None, []
        elif line[0] in " \t" and head is not None and not _HEADER.match(line):
            parts = line.split(None, 1)
            frames.append(parts[1].split(".", 1)[0].split("+", 1)[0] if len(parts) > 1 else "?")
        else:
            m = _HEADER.match(line)
            if m is None:
                raise ValueError(f"perf script: not a 'pid/tid' line: {line.strip()[:80]!r}")
            head = (int(m.group(1)), int(m.group(2)))
    return out


def delayline_pid(stacks: Iterable[Stack]) -> int:
    """The one process that sends NFQUEUE verdicts (ValueError: none or several)."""
    pids = sorted({s.pid for s in stacks if _VERDICT.intersection(s.frames)})
    if len(pids) != 1:
        raise ValueError(f"perf samples: {len(pids)} processes send NFQUEUE verdicts "
                         f"({pids}); expected the delay line's alone")
    return pids[0]


def _queueing(frames: Sequence[str]) -> bool:
    """In the bridge FORWARD hook (``br_nf_forward_ip``: the delay line's rules, ``nf_queue``)
    and not in the forward's continuation (``br_nf_forward_finish`` inside it: a packet no
    rule queued)."""
    if "br_nf_forward_ip" not in frames:
        return False
    return "br_nf_forward_finish" not in frames[: frames.index("br_nf_forward_ip")]


def classify(stack: Stack, pid: int) -> str | None:
    """The sample's category if it is the delay line's (process ``pid``) or its work
    elsewhere; None for anything else."""
    f = stack.frames
    if stack.pid != pid:
        return ELSEWHERE if _queueing(f) else None
    if _queueing(f):  # e.g. an ACK the onward path's TCP sent, queued for its own link
        return "queueing, in its process"
    reinject = next((i for i, x in enumerate(f) if x in _REINJECT), None)
    if reinject is not None:
        inner = f[:reinject]
        if "handle_softirqs" in inner or "__do_softirq" in inner:
            return ONWARD_RECEIVE if "net_rx_action" in inner else "softirq at the verdict"
        return ONWARD_FORWARD
    if "handle_softirqs" in f or "__do_softirq" in f:
        return "softirq, other"
    if _VERDICT.intersection(f) or "netlink_sendmsg" in f:
        return "verdict (netlink)"
    if "do_recvmmsg" in f or "netlink_recvmsg" in f:
        return "queue read (recvmmsg)"
    if _WAIT.intersection(f):
        return "wait, switch"
    if any(x.startswith(("entry_SYSCALL", "asm_", "do_syscall")) for x in f):
        return "kernel, other"
    return "user"


@dataclass(frozen=True)
class Split:
    """Sample counts by category for the delay line's process ``pid`` and its work
    elsewhere."""

    pid: int
    counts: dict[str, int]

    @property
    def in_process(self) -> int:
        return sum(n for c, n in self.counts.items() if c != ELSEWHERE)

    @property
    def onward(self) -> int:
        return sum(self.counts.get(c, 0) for c in ONWARD)

    @property
    def elsewhere(self) -> int:
        return self.counts.get(ELSEWHERE, 0)

    @property
    def own(self) -> int:
        """The delay line's own work: its process's samples less the onward path, plus its
        work elsewhere."""
        return self.in_process - self.onward + self.elsewhere

    def own_per_process(self) -> float:
        """Own work per unit of the process's time: scales ``/proc`` CPU to own CPU."""
        if not self.in_process:
            raise ValueError("perf samples: none in the delay line's process")
        return self.own / self.in_process


def split(stacks: Sequence[Stack]) -> Split:
    """Count ``stacks`` by category (the delay line found as :func:`delayline_pid` says)."""
    pid = delayline_pid(stacks)
    counts = Counter(c for s in stacks if (c := classify(s, pid)) is not None)
    return Split(pid, dict(counts))


class PerfRecord:
    """``perf record -a -g`` (cpu-clock) started with its events off, switched on and off
    around what is measured through its control FIFO; :meth:`stacks` reads the samples.
    Use as a context manager: perf is stopped and its files removed on exit."""

    def __init__(self, freq: int = 999, timeout: float = 10.0) -> None:
        self.freq, self.timeout = freq, timeout
        self.workdir: Path | None = None  # perf's files while it runs (removed on exit)
        self._perf = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl = self._ack = -1
        self._log: BinaryIO | None = None

    def __enter__(self) -> PerfRecord:
        perf = shutil.which("perf")
        if perf is None:
            raise RuntimeError("perf: not on PATH (Debian: apt-get install linux-perf)")
        self._perf, d = perf, Path(tempfile.mkdtemp(prefix="ztfl-perf-"))
        self.workdir = d
        try:
            for name in ("ctl", "ack"):
                os.mkfifo(d / name)
            # O_RDWR: opening a FIFO so never blocks waiting for the other end
            self._ctl = os.open(d / "ctl", os.O_RDWR)
            self._ack = os.open(d / "ack", os.O_RDWR)
            self._log = open(d / "log", "wb")
            self._proc = subprocess.Popen(
                [perf, "record", "-a", "-g", "-e", "cpu-clock", "-F", str(self.freq),
                 "-D", "-1", "--control", f"fifo:{d / 'ctl'},{d / 'ack'}",
                 "-o", str(d / "perf.data")],
                stdout=self._log, stderr=subprocess.STDOUT)
        except BaseException:
            self.close()
            raise
        return self

    def _command(self, cmd: str) -> None:
        os.write(self._ctl, f"{cmd}\n".encode())
        ready, _, _ = select.select([self._ack], [], [], self.timeout)
        if not ready or not os.read(self._ack, 64).startswith(b"ack"):
            raise RuntimeError(f"perf: no ack to {cmd!r} in {self.timeout:g} s "
                               f"(log: {self._tail()})")

    def enable(self) -> None:
        self._command("enable")

    def disable(self) -> None:
        self._command("disable")

    def stop(self) -> None:
        """Stop perf (SIGINT: it writes its file; then SIGKILL); safe to call twice."""
        p, self._proc = self._proc, None
        if p is None:
            return
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"perf record exited {p.returncode}: {self._tail()}")

    def stacks(self) -> list[Stack]:
        """The samples (stops perf first)."""
        self.stop()
        if self.workdir is None:
            raise RuntimeError("PerfRecord.stacks: perf was never started (use it in a with)")
        out = subprocess.run(
            [self._perf, "script", "-i", str(self.workdir / "perf.data"), "-F", "pid,tid,ip,sym"],
            capture_output=True, check=True, timeout=600)
        return parse(out.stdout.decode(errors="replace"))

    def _tail(self) -> str:
        if self.workdir is None:
            return "no log"
        try:
            return (self.workdir / "log").read_text(errors="replace").strip()[-300:]
        except OSError:
            return "no log"

    def close(self) -> None:
        try:
            self.stop()
        finally:
            for fd in (self._ctl, self._ack):
                if fd >= 0:
                    os.close(fd)
            self._ctl = self._ack = -1
            if self._log is not None:
                self._log.close()
                self._log = None
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(RuntimeError):  # perf's own exit must not hide the error
            self.close()
