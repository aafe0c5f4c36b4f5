"""What /proc/<pid>/stat says about a process: CPU time, start time, and a comm with ") " in it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from k8s_fixtures.proc import cpu_seconds, start_time, stat_fields

# a child that renames itself ") x (" (PR_SET_NAME = 15), then says so and waits
RENAMED = ("import ctypes, time\nctypes.CDLL(None).prctl(15, b') x (', 0, 0, 0)\n"
           "print('named', flush=True)\ntime.sleep(30)")


def test_cpu_time_counts_work_done_and_start_time_is_stable() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    t_end = time.process_time() + 0.2
    while time.process_time() < t_end:  # burn 0.2 s of this process's CPU
        pass
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.1
    assert start_time(os.getpid()) == start_time(os.getpid()) is not None


def test_a_comm_with_a_parenthesis_does_not_shift_the_fields() -> None:
    child = subprocess.Popen([sys.executable, "-c", RENAMED], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "named"
        with open(f"/proc/{child.pid}/comm") as f:
            assert f.read().strip() == ") x ("
        fields = stat_fields(child.pid)
        assert fields is not None and fields[0] in "RSD"  # the state, not a piece of comm
        assert int(fields[1]) == os.getpid()  # ppid
        assert start_time(child.pid) is not None and cpu_seconds(child.pid) is not None
    finally:
        child.kill()
        child.wait()
    assert stat_fields(child.pid) is None and cpu_seconds(child.pid) is None
    assert cpu_seconds(None) is None
