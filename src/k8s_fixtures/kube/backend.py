"""``KubeCluster``: the :class:`~k8s_fixtures.cluster.Cluster` interface on a real API server.

A thin layer: objects are validated locally (:func:`k8s_fixtures.manifests.load`) and
server-side applied in the order given; waits poll pod documents every second and hand them to
:mod:`.readiness`, which fails fast (with the fix) on a terminal failure; ``delete(namespace=)``
deletes the namespace and waits until it is gone. Namespaces this object created are removed
by :meth:`teardown`. All API access goes through :class:`~k8s_fixtures.kube.client.KubeApi`.
"""

from __future__ import annotations

import signal as _signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from k8s_fixtures.cluster import (
    ClusterError,
    ExecResult,
    Obj,
    ObjectRef,
    Objects,
    PodStatus,
    ReadyTimeout,
)
from k8s_fixtures.kube.client import KubeApi
from k8s_fixtures.kube.readiness import assess, finished
from k8s_fixtures.kube.status import pod_status
from k8s_fixtures.manifests import load, ref

POLL = 1.0  # seconds between status reads while waiting
NAMESPACE_GONE_TIMEOUT = 180.0


def label_selector(selector: Mapping[str, str] | None) -> str | None:
    return ",".join(f"{k}={v}" for k, v in selector.items()) if selector else None


class KubeCluster:
    """A cluster reached through ``api``. ``kind_cluster`` names the kind cluster (for fixes)."""

    def __init__(self, api: KubeApi, *, name: str | None = None,
                 kind_cluster: str | None = None, poll: float = POLL) -> None:
        self.api = api
        self.name = name or (api.context or "in-cluster")
        self.kind_cluster = kind_cluster
        self.backend_name = "kind" if kind_cluster else "kube"
        self.poll = poll
        self.version: dict[str, object] = {}
        self._namespaces: list[str] = []
        self._closed = False

    def connect(self, timeout: float = 5.0) -> KubeCluster:
        """Check the API server answers (raises the 'no reachable cluster' error if not)."""
        self.version = self.api.version(timeout)
        return self

    # ------------------------------------------------------------------ objects

    def apply(self, objects: Objects) -> list[ObjectRef]:
        objs = load(objects)  # local checks first: all-or-nothing on malformed input
        refs = [ref(o) for o in objs]
        for o, r in zip(objs, refs, strict=True):
            if r.kind == "Namespace" and r.name not in self._namespaces \
                    and self.api.read_namespace(r.name) is None:
                self._namespaces.append(r.name)
            self._apply_one(o, r)
        return refs

    def _apply_one(self, obj: Obj, r: ObjectRef) -> None:
        try:
            self.api.apply(obj)
        except ClusterError as e:
            # Pod specs are immutable: a leftover pod of the same name is replaced.
            if r.kind != "Pod" or "422" not in str(e):
                raise
            self.api.delete(obj, grace_seconds=0)
            self._wait_gone(lambda: self.api.read_pod(r.namespace or "", r.name), str(r), 60)
            self.api.apply(obj)

    def delete(self, objects: Objects | None = None, *, namespace: str | None = None) -> None:
        if objects is not None:
            for o in reversed(load(objects)):
                self.api.delete(o)
        if namespace is not None:
            self._delete_namespace(namespace)

    def _delete_namespace(self, name: str) -> None:
        # Pods first, without a grace period: a run's pods hold nothing worth a graceful stop,
        # and PID-1 Python processes ignore SIGTERM (30 s each otherwise).
        for doc in self.api.list_pods(name):
            self.api.delete({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": doc["metadata"]["name"], "namespace": name}}, grace_seconds=0)
        ns: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.api.delete(ns)
        self._wait_gone(lambda: self.api.read_namespace(name), f"Namespace {name}",
                        NAMESPACE_GONE_TIMEOUT)
        if name in self._namespaces:
            self._namespaces.remove(name)

    def _wait_gone(self, read: Callable[[], dict[str, Any] | None], what: str,
                   timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            doc = read()
            if doc is None:
                return
            if time.monotonic() > deadline:
                conds = [f"{c.get('type')}: {c.get('message')}"
                         for c in (doc.get("status") or {}).get("conditions") or []
                         if c.get("status") == "True"]
                raise ClusterError(f"{what} still exists after {timeout:.0f}s"
                                   + (f" ({'; '.join(conds)})" if conds else ""))
            time.sleep(self.poll)

    # ------------------------------------------------------------------ pods

    def pods(self, namespace: str, *, selector: Mapping[str, str] | None = None
             ) -> list[PodStatus]:
        return [pod_status(d) for d in self.api.list_pods(namespace, label_selector(selector))]

    def pod_status(self, namespace: str, pod: str) -> PodStatus:
        doc = self.api.read_pod(namespace, pod)
        if doc is None:
            raise ClusterError(f"Pod {namespace}/{pod}: not found")
        return pod_status(doc)

    def wait_ready(self, namespace: str, *, names: Iterable[str] | None = None,
                   selector: Mapping[str, str] | None = None,
                   timeout: float = 60.0) -> list[PodStatus]:
        wanted = list(names) if names is not None else None
        deadline = time.monotonic() + timeout
        while True:
            docs = self.api.list_pods(namespace, label_selector(selector))
            a = assess(docs, wanted, self.kind_cluster)
            if a.fatal:
                raise ClusterError("; ".join(str(f) for f in a.fatal))
            if a.done and (a.ready or wanted == []):
                return a.ready
            if time.monotonic() > deadline:
                extra = "; ".join(str(f) for f in a.failures)
                raise ReadyTimeout(f"namespace {namespace}: not ready after {timeout:.0f}s: "
                                   f"{a.describe()}" + (f"; {extra}" if extra else ""))
            time.sleep(self.poll)

    def wait_finished(self, namespace: str, pod: str, *, timeout: float = 60.0) -> PodStatus:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.api.read_pod(namespace, pod)
            if doc is None:
                raise ClusterError(f"Pod {namespace}/{pod}: not found")
            done = finished(doc)
            if done is not None:
                return done
            if time.monotonic() > deadline:
                raise ReadyTimeout(f"Pod {namespace}/{pod}: not finished after {timeout:.0f}s "
                                   f"({pod_status(doc).display})")
            time.sleep(self.poll)

    def logs(self, namespace: str, pod: str, *, container: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        if follow:
            self._wait_started(namespace, pod, container, timeout)
        return self.api.pod_log(namespace, pod, container, follow=follow, timeout=timeout)

    def _wait_started(self, namespace: str, pod: str, container: str | None,
                      timeout: float | None) -> None:
        """Logs of a container that has not started yet are an API error: wait for it."""
        deadline = time.monotonic() + (timeout if timeout is not None else 300.0)
        while True:
            st = self.pod_status(namespace, pod)
            cs = [c for c in st.containers if container is None or c.name == container]
            if cs and cs[0].state != "waiting":
                return
            if st.phase in ("Succeeded", "Failed") or time.monotonic() > deadline:
                return  # let the log call report what there is
            time.sleep(self.poll)

    def exec(self, namespace: str, pod: str, argv: list[str], *,
             container: str | None = None, timeout: float = 30.0,
             input: str | None = None) -> ExecResult:
        return self.api.exec(namespace, pod, argv, container, timeout, input)

    def signal(self, namespace: str, pod: str, container: str, sig: int) -> None:
        """``kill -SIG 1`` inside the container: PID 1 is the app's main process there (the
        image needs a ``kill``; busybox and coreutils images have one)."""
        name = _signal.Signals(sig).name.removeprefix("SIG")
        rc, out, err = self.exec(namespace, pod, ["kill", f"-{name}", "1"], container=container)
        # SIGKILL of PID 1 may end the exec session itself: treat a lost stream as delivered.
        if rc != 0 and not (sig == _signal.SIGKILL and rc in (137, -9)):
            raise ClusterError(f"pod {namespace}/{pod}: container {container}: kill -{name} 1 "
                               f"failed (rc {rc}): {(err or out).strip()[:200]}")

    def teardown(self) -> None:
        """Delete the namespaces this object created (and wait for them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for ns in list(self._namespaces):
            try:
                self._delete_namespace(ns)
            except ClusterError as e:
                errors.append(str(e))
        if errors:
            raise ClusterError("teardown: " + "; ".join(errors))
