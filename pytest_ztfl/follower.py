"""Follow a running cell's server log: live round lines, and an event per (event, round) seen,
so a schedule can wait for a round's hold, start and end (pytest_ztfl.arm, runner)."""

from __future__ import annotations

import json
import threading

from k8s_fixtures import workload
from k8s_fixtures.cluster import Cluster, ClusterError
from pytest_ztfl.live import ROUND, Progress

ROUND_EVENTS = ("round_hold", "round_start", "round_end")


class Follower(threading.Thread):
    """Streams the server's log while the run goes: progress lines, and an event per
    (event type, round) seen, so the schedule can wait for a round's hold, start and end."""

    def __init__(self, cluster: Cluster, ns: str, progress: Progress) -> None:
        super().__init__(daemon=True)
        self.cluster, self.ns, self.progress = cluster, ns, progress
        self._seen: dict[tuple[str, int | None], threading.Event] = {}
        self._logged: set[tuple[str, int | None]] = set()
        self._done = False
        self._lock = threading.Lock()

    def event(self, kind: str, r: int | None = None) -> threading.Event:
        """Set once the server logged ``kind`` (of round ``r``), or its log ended without."""
        with self._lock:
            ev = self._seen.setdefault((kind, r), threading.Event())
            if self._done:
                ev.set()
            return ev

    def round_started(self, n: int) -> threading.Event:
        return self.event("round_start", n)

    @property
    def round1_done(self) -> threading.Event:
        return self.event("round_end", 1)

    def saw(self, kind: str, r: int | None = None) -> bool:
        """Whether the server really logged ``kind`` (of round ``r``)."""
        with self._lock:
            return (kind, r) in self._logged

    @property
    def ended(self) -> bool:
        """The log ended (run_end, or the server is gone)."""
        return self._done

    def run(self) -> None:
        try:
            for line in self.cluster.logs(
                self.ns, workload.SERVER, container=workload.SERVER, follow=True
            ):
                if not line.startswith("{"):
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                kind = e.get("event")
                if kind == "round_end":
                    self.progress(
                        f"  round {e['round']}: {e['duration']:.3f} s, "
                        f"{len(e['participants'])} participants"
                        f"{'' if e['ok'] else ' FAILED'}",
                        ROUND,
                    )
                key = (kind, int(e["round"])) if kind in ROUND_EVENTS else (kind, None)
                with self._lock:
                    self._logged.add(key)
                self.event(*key).set()
                if kind == "run_end":
                    break
        except ClusterError:
            pass
        finally:
            with self._lock:
                self._done = True
                for ev in self._seen.values():
                    ev.set()
