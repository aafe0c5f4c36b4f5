"""Helpers shared by the fl_app tests: hypothesis settings, event-log polling, process cleanup.

Hypothesis settings are applied per test (not as a global profile) so the fl_app tests do not
change how other test packages in the same session run. Deadlines are off: on a shared, loaded
2-core machine per-example timing means nothing. ``ZTFL_HYPOTHESIS_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

PROPERTY = settings(
    deadline=None,
    max_examples=int(os.environ.get("ZTFL_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)


def complete_events(path: Path) -> list[dict[str, Any]]:
    """The events of every complete (newline-terminated) line written so far; [] if no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the last piece is empty or a line still being written
    return [json.loads(line) for line in lines if line.startswith("{")]


def poll(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Call ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # polling interval of a deadline loop, not a race workaround


def group_members(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes in process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def end_process_group(proc: subprocess.Popen[Any]) -> list[int]:
    """End everything a test started with ``start_new_session=True``; return the PIDs that were
    still alive after the leader exited (a launcher that leaks children shows up here)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    leaked = group_members(proc.pid)
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leaked
