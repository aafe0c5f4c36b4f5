"""A pod document, exactly as the Kubernetes API returns it, as a :class:`PodStatus`.

Input is the JSON the API server sends (``kubectl get pod -o json``: camelCase keys), so the
same function serves live reads and the recorded documents the tests use. Containers are
reported in spec order; a container the kubelet has not reported yet is ``waiting`` with no
reason (``ContainerCreating`` is only ever set by the kubelet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from k8s_fixtures.cluster import ContainerStatus, PodPhase, PodStatus

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def container_status(doc: Mapping[str, Any] | None, name: str) -> ContainerStatus:
    """One ``containerStatuses[]``/``initContainerStatuses[]`` entry (None: not reported yet)."""
    if not doc:
        return ContainerStatus(name=name, state="waiting", ready=False)
    state = _map(doc.get("state"))
    last = _map(_map(doc.get("lastState")).get("terminated"))
    kind = next((k for k in ("terminated", "running", "waiting") if k in state), "waiting")
    cur = _map(state.get(kind))
    term = cur if kind == "terminated" else last
    code = term.get("exitCode")
    return ContainerStatus(
        name=name,
        state=kind,  # type: ignore[arg-type]
        ready=bool(doc.get("ready")),
        restart_count=int(doc.get("restartCount") or 0),
        exit_code=int(code) if isinstance(code, int) else None,
        reason=term.get("reason") or None,
        message=(cur.get("message") or term.get("message")) or None,
        waiting_reason=cur.get("reason") if kind == "waiting" else None,
    )


def _statuses(spec: list[Any], reported: list[Any]) -> tuple[ContainerStatus, ...]:
    by_name = {s.get("name"): s for s in reported if isinstance(s, Mapping)}
    names = [c.get("name") for c in spec if isinstance(c, Mapping)] or list(by_name)
    return tuple(container_status(by_name.get(n), str(n)) for n in names)


def condition(doc: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The pod condition of ``type`` ``kind`` (``Ready``, ``PodScheduled`` ...), if present."""
    for c in _list(_map(doc.get("status")).get("conditions")):
        if isinstance(c, Mapping) and c.get("type") == kind:
            return c
    return None


def pod_status(doc: Mapping[str, Any]) -> PodStatus:
    """The :class:`PodStatus` of a pod document (``metadata``, ``spec``, ``status``)."""
    meta, spec, st = _map(doc.get("metadata")), _map(doc.get("spec")), _map(doc.get("status"))
    phase = st.get("phase") if st.get("phase") in PHASES else "Pending"
    ready = condition(doc, "Ready")
    return PodStatus(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        phase=cast(PodPhase, phase),
        ip=st.get("podIP") or None,
        ready=bool(ready and ready.get("status") == "True"),
        containers=_statuses(_list(spec.get("containers")), _list(st.get("containerStatuses"))),
        labels=dict(_map(meta.get("labels"))),
        init_containers=_statuses(_list(spec.get("initContainers")),
                                  _list(st.get("initContainerStatuses"))),
    )
