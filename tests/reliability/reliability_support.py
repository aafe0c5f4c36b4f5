"""Helpers of the reliability tests (imported by conftest and the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class FaultRun:
    row: dict[str, Any]
    events: list[dict[str, Any]]
    classes: dict[str, int]  # the row's harness failure classes
    actions: list[Any]  # faults.Action records of the injector
    server_log: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def failures(self, client: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.of("failure") if client is None or e["client"] == client]


class LogTap:
    """Delegates to a cluster; keeps the server container's whole log when it is read after
    the run (the runner reads it once, without ``follow``, before deleting the namespace)."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster
        self.server_log = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)

    def logs(self, namespace: str, pod: str, **kw: Any) -> Any:
        from k8s_fixtures import workload

        it = self._cluster.logs(namespace, pod, **kw)
        if pod == workload.SERVER and kw.get("container") == workload.SERVER and not kw.get(
            "follow"
        ):
            lines = list(it)
            self.server_log = "".join(lines)
            return iter(lines)
        return it
