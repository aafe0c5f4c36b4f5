"""A log follower's wait (k8s_fixtures.local.inotify): it wakes when the file is written, not
at its timeout, and only sleeps where the file cannot be watched."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from k8s_fixtures.local.inotify import FileWatch


def test_a_write_wakes_the_wait(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text("")
    w = FileWatch(str(log))
    try:
        threading.Timer(0.2, lambda: log.open("a").write("line\n")).start()
        t = time.monotonic()
        w.wait(30.0)
        assert time.monotonic() - t < 10.0  # woken by the write (else 30 s)
        t = time.monotonic()
        w.wait(0.2)  # nothing written since: the timeout
        assert time.monotonic() - t >= 0.15
    finally:
        w.close()


def test_an_unwatchable_file_only_sleeps(tmp_path: Path) -> None:
    w = FileWatch(str(tmp_path / "missing.log"))
    t = time.monotonic()
    w.wait(0.2)
    assert time.monotonic() - t >= 0.15
    w.close()
    w.close()  # twice is harmless
