"""``KubeCluster``: the :class:`~k8s_fixtures.cluster.Cluster` interface on a real API server.

A thin layer: objects are validated locally (:func:`k8s_fixtures.manifests.load`) and
server-side applied in the order given. Waits for pods list them once and then watch them from
the list's resourceVersion (listing again when the server says it has expired, 410 Gone), so a
wait ends on the event that decides it, not at the next poll; every view of the pods goes to
:mod:`.readiness`, which fails fast (with the fix) on a terminal failure. ``delete(namespace=)``
deletes the namespace and waits until it is gone: that wait polls every ``poll`` seconds, as the
ClusterRole the harness asks for (``deploy/rbac.yaml``) grants no ``watch`` on namespaces.
Namespaces this object created are removed by :meth:`teardown`. All API access goes through
:class:`~k8s_fixtures.kube.client.KubeApi`.
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
from k8s_fixtures.kube.client import KubeApi, WatchExpired
from k8s_fixtures.kube.readiness import Assessment, assess, finished
from k8s_fixtures.kube.status import pod_status
from k8s_fixtures.manifests import load, ref

POLL = 1.0  # seconds between reads of a namespace being deleted (no watch on namespaces)
WATCH_WINDOW = 60.0  # longest single watch request; the wait then watches on from where it was
NAMESPACE_GONE_TIMEOUT = 180.0


def label_selector(selector: Mapping[str, str] | None) -> str | None:
    return ",".join(f"{k}={v}" for k, v in selector.items()) if selector else None


def _name(doc: Mapping[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name"))


def _one_pod(name: str) -> str:
    return f"metadata.name={name}"


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
            self._wait_pod_gone(r.namespace or "", r.name, str(r), 60)
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
        """Poll ``read`` until it finds nothing (a namespace: no ``watch`` on those)."""
        deadline = time.monotonic() + timeout
        while True:
            doc = read()
            if doc is None:
                return
            if time.monotonic() > deadline:
                raise ClusterError(_still_exists(what, doc, timeout))
            time.sleep(self.poll)

    def _wait_pod_gone(self, namespace: str, pod: str, what: str, timeout: float) -> None:
        doc: Mapping[str, Any] = {}
        for docs in self._watch_pods(namespace, time.monotonic() + timeout,
                                     field_selector=_one_pod(pod)):
            doc = next((d for d in docs if _name(d) == pod), {})
            if not doc:
                return
        raise ClusterError(_still_exists(what, doc, timeout))

    # ------------------------------------------------------------------ watching pods

    def _watch_pods(self, namespace: str, deadline: float, *, label_selector: str | None = None,
                    field_selector: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """The namespace's pods (those the selectors match): as listed first, then again after
        every change the API server reports, until ``deadline`` (``time.monotonic()``) has
        passed. A watch the server ends (its timeout) is resumed from the last resourceVersion;
        one whose resourceVersion has expired (410 Gone) is replaced by a new list. The caller
        stops iterating once it has what it waits for: nothing is read after that event."""
        selectors = {"label_selector": label_selector, "field_selector": field_selector}
        version: str | None = None
        pods: dict[str, dict[str, Any]] = {}
        while True:
            if version is None:
                items, version = self.api.list_pods_at(namespace, **selectors)
                pods = {_name(d): d for d in items}
                yield list(pods.values())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                for kind, doc in self.api.watch_pods(namespace, version,
                                                     min(remaining, WATCH_WINDOW), **selectors):
                    version = str((doc.get("metadata") or {}).get("resourceVersion")
                                  or version)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        pods.pop(_name(doc), None)
                    else:
                        pods[_name(doc)] = doc
                    yield list(pods.values())
                    if time.monotonic() > deadline:
                        return
            except WatchExpired:
                version = None

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
        a = Assessment()
        for docs in self._watch_pods(namespace, time.monotonic() + timeout,
                                     label_selector=label_selector(selector)):
            a = assess(docs, wanted, self.kind_cluster)
            if a.fatal:
                raise ClusterError("; ".join(str(f) for f in a.fatal))
            if a.done and (a.ready or wanted == []):
                return a.ready
        extra = "; ".join(str(f) for f in a.failures)
        raise ReadyTimeout(f"namespace {namespace}: not ready after {timeout:.0f}s: "
                           f"{a.describe()}" + (f"; {extra}" if extra else ""))

    def _watch_pod(self, namespace: str, pod: str,
                   timeout: float) -> Iterator[Mapping[str, Any]]:
        """Pod ``pod``'s document, listed and then after every change, until ``timeout``
        seconds have passed; not being there (or being deleted) is an error."""
        for docs in self._watch_pods(namespace, time.monotonic() + timeout,
                                     field_selector=_one_pod(pod)):
            doc = next((d for d in docs if _name(d) == pod), None)
            if doc is None:
                raise ClusterError(f"Pod {namespace}/{pod}: not found")
            yield doc

    def wait_finished(self, namespace: str, pod: str, *, timeout: float = 60.0) -> PodStatus:
        doc: Mapping[str, Any] = {}
        for doc in self._watch_pod(namespace, pod, timeout):
            done = finished(doc)
            if done is not None:
                return done
        raise ReadyTimeout(f"Pod {namespace}/{pod}: not finished after {timeout:.0f}s "
                           f"({pod_status(doc).display})")

    def logs(self, namespace: str, pod: str, *, container: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        if follow:
            self._wait_started(namespace, pod, container, timeout)
        return self.api.pod_log(namespace, pod, container, follow=follow, timeout=timeout)

    def _wait_started(self, namespace: str, pod: str, container: str | None,
                      timeout: float | None) -> None:
        """Logs of a container that has not started yet are an API error: wait for it (at the
        deadline, or once the pod has ended, the log call reports what there is)."""
        for doc in self._watch_pod(namespace, pod, timeout if timeout is not None else 300.0):
            st = pod_status(doc)
            cs = [c for c in st.containers if container is None or c.name == container]
            if (cs and cs[0].state != "waiting") or st.phase in ("Succeeded", "Failed"):
                return

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


def _still_exists(what: str, doc: Mapping[str, Any], timeout: float) -> str:
    conds = [f"{c.get('type')}: {c.get('message')}"
             for c in (doc.get("status") or {}).get("conditions") or []
             if c.get("status") == "True"]
    return f"{what} still exists after {timeout:.0f}s" + (f" ({'; '.join(conds)})" if conds else "")
