"""Helper processes: they must not outlive the harness that started them, and what
``/proc/<pid>/stat`` says about them (CPU time, start time).

``die_with_parent`` runs in the child between fork and exec (``preexec_fn``): the kernel sends
it SIGKILL when the thread that started it dies, even when the harness itself was SIGKILLed and
had no chance to clean up. ``ip netns exec`` execs its command in place, so the setting reaches
the real program (tcpdump, the delay line, probe servers). Start such processes from a thread
that lives as long as they should (the harness's main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after ``pid (comm)`` (index 0 is the state, so field
    N of proc(5) is index N - 3), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # comm may itself contain ") "


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a live process in seconds, or None."""
    f = None if pid is None else stat_fields(pid)
    return None if f is None else (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def start_time(pid: int) -> int | None:
    """The kernel start time of a process (clock ticks since boot), to detect PID reuse."""
    f = stat_fields(pid)
    return None if f is None else int(f[19])


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal): CPU seconds every CPU of this machine has spent busy (user, nice, system,
    irq, softirq, steal) and stolen by the hypervisor, since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick
