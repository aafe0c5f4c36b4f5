"""Waiting for pods: polling until they are ready or finished, and the one-line description
of a pod that is not (its phase, exits, restarts and last log line) that the errors carry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from k8s_fixtures.cluster import ClusterError, PodStatus, ReadyTimeout

POLL = 0.02  # status polling interval of the wait_* methods: the first, growing to POLL_MAX
# Each poll reads every pod's status under the cluster's lock (a tcpSocket readiness probe
# reads the pod's /proc/<pid>/net/tcp): four arms' waits at 20 ms held that lock and the GIL
# for most of a block's set-up (py-spy), so the interval grows while the pods start.
POLL_MAX = 0.1


def _intervals() -> Iterator[float]:
    poll = POLL
    while True:
        yield poll
        poll = min(POLL_MAX, poll * 1.5)


def until_ready(namespace: str, statuses: Callable[[], list[PodStatus]],
                describe: Callable[[PodStatus], str], timeout: float) -> list[PodStatus]:
    """Poll ``statuses()`` until every pod is ready; raise ClusterError as soon as one cannot
    become ready, ReadyTimeout after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    intervals = _intervals()
    while True:
        sts = statuses()
        for s in sts:
            if s.phase in ("Failed", "Succeeded") or any(
                c.reason == "StartError" for c in (*s.init_containers, *s.containers)
            ):
                raise ClusterError(f"pod {namespace}/{s.name} will not become ready: "
                                   f"{describe(s)}")
        if sts and all(s.ready for s in sts):
            return sts
        if time.monotonic() > deadline:
            desc = "; ".join(f"{s.name}: {describe(s)}" for s in sts if not s.ready)
            raise ReadyTimeout(f"pods in {namespace} not ready after {timeout}s: "
                               f"{desc or 'no matching pods'}")
        time.sleep(next(intervals))


def describe(s: PodStatus, logs: Callable[[str | None], Iterable[str]]) -> str:
    """Phase, non-zero exits, restarts and the last log line of the first failed init container
    (else the first container); ``logs(container)`` reads the pod's log."""
    parts: list[str] = [s.phase if s.display == s.phase else f"{s.phase} ({s.display})"]
    failed_init = None
    for c in (*s.init_containers, *s.containers):
        if c.exit_code is not None and (c.exit_code != 0 or c in s.containers):
            parts.append(f"{c.name} exit {c.exit_code} {c.reason}"
                         + (f" ({c.message})" if c.message else ""))
            if c in s.init_containers and failed_init is None:
                failed_init = c.name
        if c.restart_count:
            parts.append(f"{c.name} restarts {c.restart_count}")
    try:
        lines = list(logs(failed_init))
    except ClusterError:  # the pod went away meanwhile
        lines = []
    last = [line for line in lines if line.strip()][-1:]
    if last:
        parts.append(f"last log line: {last[0].strip()[:200]}")
    return ", ".join(parts)


def until_finished(namespace: str, pod: str, status: Callable[[], PodStatus],
                   timeout: float) -> PodStatus:
    """Poll ``status()`` until the pod has Succeeded or Failed; ReadyTimeout after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        s = status()
        if s.phase in ("Succeeded", "Failed"):
            return s
        if time.monotonic() > deadline:
            raise ReadyTimeout(f"pod {namespace}/{pod} still {s.phase} after {timeout}s")
        time.sleep(POLL)
