"""Decide, from pod documents, whether a set of pods is ready, still coming, or has failed.

Pure: the backend polls the API and feeds each round of documents to :func:`assess`; the
result says whether to return, keep waiting, or raise now. A terminal failure (an image that
is not there, OOMKilled, Init:Error, a crashed container of a ``restartPolicy: Never`` pod)
ends the wait at once with the failure's fix, instead of at the deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from k8s_fixtures.cluster import PodStatus
from k8s_fixtures.kube.failures import Failure, classify
from k8s_fixtures.kube.status import pod_status


@dataclass(frozen=True)
class Assessment:
    ready: list[PodStatus] = field(default_factory=list)
    waiting: list[PodStatus] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # asked for by name, not found
    failures: list[Failure] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.waiting and not self.missing and not self.fatal

    @property
    def fatal(self) -> list[Failure]:
        return [f for f in self.failures if f.terminal]

    def describe(self) -> str:
        """One line for a timeout or failure message."""
        parts = [f"{p.name} {p.display}" for p in self.waiting]
        parts += [f"{n} not found" for n in self.missing]
        return ", ".join(parts) or "none waiting"


def assess(docs: Iterable[Mapping[str, Any]], names: Sequence[str] | None = None,
           kind_cluster: str | None = None) -> Assessment:
    """Readiness of the pods ``names`` (all given documents if None)."""
    docs = list(docs)
    by_name = {str((d.get("metadata") or {}).get("name")): d for d in docs}
    wanted = list(names) if names is not None else list(by_name)
    a = Assessment()
    for n in wanted:
        doc = by_name.get(n)
        if doc is None:
            a.missing.append(n)
            continue
        st = pod_status(doc)
        failures = classify(doc, kind_cluster)
        a.failures.extend(failures)
        if st.ready:
            a.ready.append(st)
        elif st.phase == "Failed":
            if not failures:
                a.failures.append(Failure(st.namespace, st.name, None, "crash", "Failed",
                                          f"pod phase Failed ({st.display})",
                                          f"kubectl describe pod -n {st.namespace} {st.name}"))
        else:
            a.waiting.append(st)
    return a


def finished(doc: Mapping[str, Any]) -> PodStatus | None:
    """The pod's status if its phase is Succeeded or Failed, else None."""
    st = pod_status(doc)
    return st if st.phase in ("Succeeded", "Failed") else None
