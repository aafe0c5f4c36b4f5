"""Reading a container's log file: what is there now, or followed while the container runs
(until it ends, its pod ends or goes away, or a timeout)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from k8s_fixtures.local.inotify import FileWatch
from k8s_fixtures.local.pods import ContainerRun, PodRun
from k8s_fixtures.local.waiting import POLL


def read_log(p: PodRun, c: ContainerRun, follow: bool, timeout: float | None,
             pods: Mapping[tuple[str, str], PodRun]) -> Iterator[str]:
    """The lines of ``c``'s log; ``pods`` is the cluster's live pod table (a pod gone from it
    ends a follow)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        f = open(c.log, errors="replace")  # noqa: SIM115 (closed in finally)
    except FileNotFoundError:
        return
    watch: FileWatch | None = None  # a follower wakes when the container writes
    try:
        buf = ""
        while True:
            buf += f.read()
            *lines, buf = buf.split("\n")
            yield from (line + "\n" for line in lines)
            done = (c.state == "terminated" or p.deleting or p.key not in pods
                    or (c.pid is None and p.phase() in ("Succeeded", "Failed")))
            timed_out = deadline is not None and time.monotonic() > deadline
            if not follow or timed_out or done:
                # one more read: the container may have written just before it ended
                buf += f.read()
                *lines, buf = buf.split("\n")
                yield from (line + "\n" for line in lines)
                if buf:
                    yield buf
                return
            watch = watch or FileWatch(str(c.log))
            watch.wait(POLL)
    finally:
        if watch is not None:
            watch.close()
        f.close()
