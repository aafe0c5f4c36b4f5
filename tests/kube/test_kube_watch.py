"""Waits on pods watch them (list, then watch from the list's resourceVersion), offline.

The boundary is faked at the HTTP response: a stand-in for the client's ``CoreV1Api`` whose
``list_namespaced_pod`` answers a list with a PodList document and a watch with a stream of
JSON event lines, as the API server does. Everything above it is real: the ``kubernetes``
client's ``Watch`` (deserialising each event, raising ``ApiException(410)`` on an expired
resourceVersion), :class:`~k8s_fixtures.kube.client.KubeApi` and :class:`KubeCluster`. Time is
a fake clock that moves only when a watch ends because its ``timeout_seconds`` ran out, and
``time.sleep`` fails the test: a wait may not sleep, and returns on the event that decides it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kube_support import fixture_doc

from k8s_fixtures.cluster import ClusterError, PrivilegeError, ReadyTimeout
from k8s_fixtures.kube import backend
from k8s_fixtures.kube.backend import KubeCluster
from k8s_fixtures.kube.client import KubeApi

NS = "ztfl-w"
FORBIDDEN = object()  # a watch script: the API server answers 403
UNREACHABLE = {"type": "UNREACHABLE"}  # read only if the wait reads past its deciding event


def pod(name: str, rv: str, state: str = "running", *, ready: bool = False,
        phase: str = "Running") -> dict[str, Any]:
    """A pod document as the API server sends it (what the client's models require)."""
    states = {"running": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
              "creating": {"waiting": {"reason": "ContainerCreating"}},
              "done": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": rv,
                     "labels": {"app": "fl"}},
        "spec": {"containers": [{"name": "c", "image": "img"}]},
        "status": {
            "phase": phase, "podIP": "10.0.0.5",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "c", "image": "img", "imageID": "", "ready": ready,
                                   "restartCount": 0, "state": states[state]}],
        },
    }


def pod_list(rv: str, *pods: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv},
            "items": list(pods)}


def event(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": doc}


def bookmark(rv: str) -> dict[str, Any]:
    """A bookmark: only the resourceVersion the watch has reached, no pod."""
    return {"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                           "metadata": {"resourceVersion": rv}}}


def gone(rv: str) -> dict[str, Any]:
    """The ERROR event of a watch whose resourceVersion has expired."""
    return {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {rv} (400)", "reason": "Expired", "code": 410}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class Stream:
    """A watch response: one chunk per event line; when the lines run out, the server has
    ended the watch after its ``timeout_seconds``, so the clock moves by that much."""

    status = 200

    def __init__(self, events: list[dict[str, Any]], clock: Clock, seconds: int) -> None:
        self.events, self.clock, self.seconds = events, clock, seconds
        self.sent = 0
        self.closed = False

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        for e in self.events:
            if e is UNREACHABLE:
                raise AssertionError("the wait read past the event that decided it")
            self.sent += 1
            yield (json.dumps(e) + "\n").encode()
        self.clock.now += self.seconds

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


class FakeCore:
    """``CoreV1Api.list_namespaced_pod`` answering from scripts: one PodList per list, one
    event script per watch (``FORBIDDEN``: a 403 answer)."""

    def __init__(self, clock: Clock, lists: list[dict[str, Any]], watches: list[Any]) -> None:
        self.clock, self.lists, self.watches = clock, lists, watches
        self.calls: list[tuple[Any, ...]] = []
        self.streams: list[Stream] = []

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        """List or watch objects of kind Pod (the docstring the client reads the type from).

        :rtype: V1PodList
        """
        assert namespace == NS and kw["_preload_content"] is False
        selectors = {k: kw[k] for k in ("label_selector", "field_selector") if k in kw}
        if not kw.get("watch"):
            self.calls.append(("list", selectors))
            return SimpleNamespace(data=json.dumps(self.lists.pop(0)).encode())
        self.calls.append(("watch", kw["resource_version"], kw["timeout_seconds"], selectors))
        assert kw["allow_watch_bookmarks"] is True
        script = self.watches.pop(0)
        if script is FORBIDDEN:
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=403, reason="Forbidden")
        s = Stream(script, self.clock, kw["timeout_seconds"])
        self.streams.append(s)
        return s


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a wait slept {seconds}s")

    monkeypatch.setattr(backend, "time", SimpleNamespace(monotonic=c.monotonic, sleep=no_sleep))
    return c


def cluster_on(tmp_path: Path, core: FakeCore) -> KubeCluster:
    config = tmp_path / "config"
    config.write_text("""apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
""")
    api = KubeApi("c", config)
    api._core = core
    return KubeCluster(api)


def test_wait_ready_returns_on_the_event_that_makes_the_last_pod_ready(
        tmp_path: Path, clock: Clock) -> None:
    core = FakeCore(clock, [pod_list("100", pod("a", "90"), pod("b", "95", "creating",
                                                                 phase="Pending"))],
                    [[event("MODIFIED", pod("a", "101", ready=True)),
                      event("MODIFIED", pod("b", "102")),
                      bookmark("102"),
                      event("MODIFIED", pod("b", "103", ready=True)),
                      UNREACHABLE]])
    ready = cluster_on(tmp_path, core).wait_ready(NS, selector={"app": "fl"}, timeout=30)
    assert [p.name for p in ready] == ["a", "b"] and all(p.ready for p in ready)
    assert core.calls == [("list", {"label_selector": "app=fl"}),
                          ("watch", "100", 30, {"label_selector": "app=fl"})]
    assert core.streams[0].sent == 4 and core.streams[0].closed  # released at once
    assert clock.now == 0.0  # no watch had to run out


def test_an_expired_resource_version_lists_again_and_watches_from_the_new_list(
        tmp_path: Path, clock: Clock) -> None:
    waiting = pod("a", "90", "creating", phase="Pending")
    core = FakeCore(clock, [pod_list("100", waiting), pod_list("300", waiting)],
                    [[gone("100")], [event("MODIFIED", pod("a", "301", ready=True)),
                                     UNREACHABLE]])
    [ready] = cluster_on(tmp_path, core).wait_ready(NS, names=["a"], timeout=30)
    assert ready.name == "a"
    assert [c[:2] for c in core.calls] == [("list", {}), ("watch", "100"), ("list", {}),
                                           ("watch", "300")]


def test_a_watch_the_server_ends_is_resumed_from_the_last_version_until_the_deadline(
        tmp_path: Path, clock: Clock) -> None:
    """The server ends each watch after its timeout_seconds: the wait watches on from the last
    resourceVersion it saw (a bookmark's included), in windows of at most WATCH_WINDOW, and at
    the deadline raises ReadyTimeout with the message the polling wait gave."""
    core = FakeCore(clock, [pod_list("100", pod("a", "90", "creating", phase="Pending"))],
                    [[event("MODIFIED", pod("a", "105", "creating", phase="Pending"))],
                     [bookmark("180")],
                     []])
    with pytest.raises(ReadyTimeout) as e:
        cluster_on(tmp_path, core).wait_ready(NS, names=["a", "b"], timeout=150)
    assert str(e.value) == ("namespace ztfl-w: not ready after 150s: a ContainerCreating, "
                            "b not found")
    assert [c[1:3] for c in core.calls[1:]] == [("100", 60), ("105", 60),
                                                ("180", 30)]
    assert clock.now == 150.0


def test_a_terminal_failure_in_an_event_ends_the_wait_at_once(tmp_path: Path,
                                                               clock: Clock) -> None:
    failed = fixture_doc("imagepullbackoff.yaml")
    failed["metadata"].update(namespace=NS, resourceVersion="101")
    name = failed["metadata"]["name"]
    core = FakeCore(clock, [pod_list("100")], [[event("ADDED", failed), UNREACHABLE]])
    with pytest.raises(ClusterError,
                       match=rf"^pod {NS}/{name} container {name}: ImagePullBackOff \[image\]"):
        cluster_on(tmp_path, core).wait_ready(NS, names=[name], timeout=30)
    assert clock.now == 0.0


def test_wait_finished_follows_one_pod_and_reports_its_deletion_as_not_found(
        tmp_path: Path, clock: Clock) -> None:
    core = FakeCore(clock, [pod_list("100", pod("job", "90")), pod_list("200", pod("job", "190"))],
                    [[event("MODIFIED", pod("job", "101")),
                      event("MODIFIED", pod("job", "102", "done", phase="Succeeded")),
                      UNREACHABLE],
                     [event("DELETED", pod("job", "201")), UNREACHABLE]])
    cluster = cluster_on(tmp_path, core)
    st = cluster.wait_finished(NS, "job", timeout=30)
    assert (st.phase, st.display) == ("Succeeded", "Completed")
    assert core.calls[0] == ("list", {"field_selector": "metadata.name=job"})
    with pytest.raises(ClusterError, match=rf"^Pod {NS}/job: not found$"):
        cluster.wait_finished(NS, "job", timeout=30)
    assert clock.now == 0.0


def test_wait_finished_times_out_with_the_same_message(tmp_path: Path, clock: Clock) -> None:
    core = FakeCore(clock, [pod_list("100", pod("job", "90"))], [[]])
    with pytest.raises(ReadyTimeout, match=rf"^Pod {NS}/job: not finished after 20s \(Running\)$"):
        cluster_on(tmp_path, core).wait_finished(NS, "job", timeout=20)
    assert clock.now == 20.0


def test_a_pod_that_is_not_there_is_not_found_without_watching(tmp_path: Path,
                                                                clock: Clock) -> None:
    core = FakeCore(clock, [pod_list("100")], [])
    with pytest.raises(ClusterError, match=rf"^Pod {NS}/ghost: not found$"):
        cluster_on(tmp_path, core).wait_finished(NS, "ghost")
    assert [c[0] for c in core.calls] == ["list"]


def test_a_forbidden_watch_names_the_verb_and_the_check(tmp_path: Path, clock: Clock) -> None:
    core = FakeCore(clock, [pod_list("100", pod("a", "90"))], [FORBIDDEN])
    with pytest.raises(PrivilegeError) as e:
        cluster_on(tmp_path, core).wait_ready(NS, names=["a"], timeout=30)
    assert "watch pods" in str(e.value) and "403" in str(e.value)
    assert "kubectl auth can-i watch pods -n ztfl-w" in str(e.value)
