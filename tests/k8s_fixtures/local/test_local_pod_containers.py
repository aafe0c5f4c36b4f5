"""Init containers, multi-container pods, exec into a container's own view, pod annotations.

All tests share the module's cluster (see conftest.py); each gets its own namespace. Nothing
here sleeps to wait for the backend: tests wait on pod status, logs or exec results, and the
pod scripts wait on files they are told to expect.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ztlc_support import PY, netns_named

from k8s_fixtures.cluster import ClusterError, ContainerStatus, Obj, PodStatus
from k8s_fixtures.local.backend import LocalCluster

pytestmark = pytest.mark.privileged
_counter = itertools.count()

# Each container appends one JSON line to the shared emptyDir: its name, when it started and
# ended (CLOCK_MONOTONIC is machine-wide), its network namespace and what it found there.
RECORD = (
    "import json, os, sys, time\n"
    "t0 = time.monotonic()\n"
    "seen = open('/var/lib/ztlc-work/order').read() if os.path.exists("
    "'/var/lib/ztlc-work/order') else ''\n"
    "rec = {'name': sys.argv[1], 'start': t0, 'netns': os.stat('/proc/self/ns/net').st_ino,\n"
    "       'seen': [json.loads(x)['name'] for x in seen.splitlines()]}\n"
    "print('hello from', sys.argv[1], flush=True)\n"
    "rec['end'] = time.monotonic()\n"
    "with open('/var/lib/ztlc-work/order', 'a') as f:\n"
    "    f.write(json.dumps(rec) + '\\n')\n"
)
WAIT_FOR = (  # wait for a file (argv[1]) to appear, then say so
    "import os, sys, time\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.02)\n"
    "print('seen', sys.argv[1], flush=True)\n"
)
WORK = {"name": "work", "mountPath": "/var/lib/ztlc-work"}


def container(name: str, script: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "ignored.example/never-pulled:1",
            "command": [PY, "-c", script, *args], **extra}


def pod(ns: str, name: str, containers: list[dict[str, Any]],
        init: list[dict[str, Any]] | None = None, *, restart: str = "Never",
        volumes: tuple[str, ...] = ("work",), annotations: dict[str, str] | None = None) -> Obj:
    spec: dict[str, Any] = {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                            "containers": containers,
                            "volumes": [{"name": v, "emptyDir": {}} for v in volumes]}
    if init is not None:
        spec["initContainers"] = init
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def by_name(cs: tuple[ContainerStatus, ...], name: str) -> ContainerStatus:
    return next(c for c in cs if c.name == name)


def wait_for(cluster: LocalCluster, ns: str, name: str, what: str, cond: Any,
             timeout: float = 20) -> PodStatus:
    """Poll the pod's status until ``cond(status)``."""
    deadline = time.monotonic() + timeout
    while True:
        s = cluster.pod_status(ns, name)
        if cond(s):
            return s
        assert time.monotonic() < deadline, f"{what}: {s}"
        time.sleep(0.02)


@pytest.fixture
def ns(cluster: LocalCluster) -> Iterator[str]:
    name = f"pc{next(_counter)}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.delete(namespace=name)
    assert not [p for p in netns_named(cluster.name) if f"-{name}." in p]


def test_init_containers_run_in_order_to_completion_first(cluster: LocalCluster,
                                                          ns: str) -> None:
    cap = {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
    cluster.apply(pod(ns, "p", [
        container("main", RECORD, "main", volumeMounts=[WORK]),
        container("side", RECORD, "side", volumeMounts=[WORK]),
    ], init=[
        container("first", RECORD, "first", volumeMounts=[WORK], **cap),
        container("second", RECORD, "second", volumeMounts=[WORK]),
    ]))
    status = cluster.wait_finished(ns, "p", timeout=30)
    assert (status.phase, status.display, status.exit_code) == ("Succeeded", "Completed", 0)
    assert [(c.name, c.state, c.exit_code, c.reason) for c in status.init_containers] == [
        ("first", "terminated", 0, "Completed"), ("second", "terminated", 0, "Completed")]
    assert [c.name for c in status.containers] == ["main", "side"]
    # Each init container's log is kept and can be read by its name.
    assert list(cluster.logs(ns, "p", container="first")) == ["hello from first\n"]
    assert list(cluster.logs(ns, "p", container="second")) == ["hello from second\n"]
    assert list(cluster.logs(ns, "p")) == ["hello from main\n"]  # default: first container
    recs = {r["name"]: r for r in map(json.loads, _read_work(cluster, ns, "p"))}
    first, second, main, side = (recs[n] for n in ("first", "second", "main", "side"))
    # In order, each to completion before the next; the regular ones after all of them.
    assert first["end"] <= second["start"], recs
    assert second["end"] <= min(main["start"], side["start"]), recs
    assert second["seen"] == ["first"]
    assert set(main["seen"]) >= {"first", "second"} and set(side["seen"]) >= {"first", "second"}
    # One pod network namespace for all of them (and not the harness's).
    assert len({r["netns"] for r in recs.values()}) == 1
    assert first["netns"] != Path("/proc/self/ns/net").stat().st_ino


def _read_work(cluster: LocalCluster, ns: str, name: str) -> list[str]:
    """The shared emptyDir's record file, read from the pod's state directory."""
    f = cluster.state_dir / "pods" / f"{ns}.{name}" / "volumes" / "work" / "order"
    return f.read_text().splitlines()


def test_readiness_waits_for_init_and_exec_reaches_an_init_container(
        cluster: LocalCluster, ns: str) -> None:
    gate = {"name": "gate", "mountPath": "/var/lib/ztlc-gate"}
    web = container("web", "import http.server\nhttp.server.HTTPServer(('', 8080), "
                           "http.server.BaseHTTPRequestHandler).serve_forever()",
                    ports=[{"name": "http", "containerPort": 8080}],
                    readinessProbe={"tcpSocket": {"port": "http"}})
    cluster.apply(pod(ns, "gated", [web], init=[
        container("wait", WAIT_FOR, "/var/lib/ztlc-gate/open", volumeMounts=[gate])],
        restart="Always", volumes=("gate",)))
    # The init container blocks until told: the pod stays Pending, its web never starts.
    s = wait_for(cluster, ns, "gated", "init container running",
                 lambda s: s.init_containers[0].state == "running")
    assert (s.phase, s.ready, s.display) == ("Pending", False, "Init:0/1")
    assert (s.containers[0].state, s.containers[0].waiting_reason) == (
        "waiting", "PodInitializing")
    with pytest.raises(ClusterError, match="is not running"):
        cluster.exec(ns, "gated", ["true"], container="web")
    # exec runs in the init container's own view: its volume at its mountPath.
    rc, _, err = cluster.exec(ns, "gated", ["touch", "/var/lib/ztlc-gate/open"],
                              container="wait")
    assert rc == 0, err
    ready = cluster.wait_ready(ns, names=["gated"], timeout=20)[0]
    assert (ready.phase, ready.display) == ("Running", "Running")
    assert ready.init_containers[0].reason == "Completed"
    assert list(cluster.logs(ns, "gated", container="wait")) == [
        "seen /var/lib/ztlc-gate/open\n"]


def test_failing_init_container_fails_the_pod(cluster: LocalCluster, ns: str) -> None:
    marker = {"name": "work", "mountPath": "/var/lib/ztlc-work"}
    cluster.apply(pod(ns, "broken", [
        container("main", "open('/var/lib/ztlc-work/main-ran', 'w')", volumeMounts=[marker]),
    ], init=[
        container("setup", "import sys\nprint('setting up', flush=True)\nsys.exit(3)"),
        container("later", "open('/var/lib/ztlc-work/later-ran', 'w')", volumeMounts=[marker]),
    ]))
    s = cluster.wait_finished(ns, "broken", timeout=30)
    assert (s.phase, s.display, s.exit_code, s.reason) == ("Failed", "Init:Error", 3, "Error")
    setup, later = s.init_containers
    assert (setup.state, setup.exit_code, setup.reason, setup.restart_count) == (
        "terminated", 3, "Error", 0)
    assert (later.state, later.exit_code) == ("waiting", None)
    main = s.containers[0]
    assert (main.state, main.waiting_reason, main.exit_code) == ("waiting", "PodInitializing",
                                                                 None)
    assert list(cluster.logs(ns, "broken", container="setup")) == ["setting up\n"]
    assert list(cluster.logs(ns, "broken", container="main")) == []
    work = cluster.state_dir / "pods" / f"{ns}.broken" / "volumes" / "work"
    assert sorted(p.name for p in work.iterdir()) == []  # neither later nor main ran
    with pytest.raises(ClusterError, match=r"Init:Error.*setup exit 3 Error.*setting up"):
        cluster.wait_ready(ns, names=["broken"], timeout=5)


def test_failed_init_container_is_retried_unless_never(cluster: LocalCluster, ns: str) -> None:
    flaky = ("import os, sys\np = '/var/lib/ztlc-work/tried'\n"
             "if not os.path.exists(p):\n    open(p, 'w'); print('first try fails', flush=True)"
             "\n    sys.exit(1)\nprint('second try works', flush=True)")
    cluster.apply(pod(ns, "flaky", [container("main", "print('main ran')")],
                      init=[container("flaky", flaky, volumeMounts=[WORK])],
                      restart="OnFailure"))
    s = cluster.wait_finished(ns, "flaky", timeout=30)
    assert (s.phase, s.display) == ("Succeeded", "Completed")
    init = s.init_containers[0]
    assert (init.restart_count, init.exit_code, init.reason) == (1, 0, "Completed")
    assert list(cluster.logs(ns, "flaky", container="flaky")) == [
        "first try fails\n", "second try works\n"]
    assert list(cluster.logs(ns, "flaky")) == ["main ran\n"]


def test_job_and_deployment_templates_run_init_containers(cluster: LocalCluster,
                                                          ns: str) -> None:
    prepare = container("prepare", "open('/var/lib/ztlc-work/ready', 'w').write('prepared')",
                        volumeMounts=[WORK])
    use = container("use", "print(open('/var/lib/ztlc-work/ready').read())",
                    volumeMounts=[WORK])
    serve = container("serve", "import http.server\nhttp.server.HTTPServer(('', 8080), "
                               "http.server.BaseHTTPRequestHandler).serve_forever()",
                      volumeMounts=[WORK], ports=[{"containerPort": 8080}],
                      readinessProbe={"exec": {"command": ["test", "-e",
                                                           "/var/lib/ztlc-work/ready"]}})

    def template(main: dict[str, Any], restart: str) -> dict[str, Any]:
        return {"metadata": {"labels": {"app": main["name"]}},
                "spec": pod(ns, "x", [main], [prepare], restart=restart)["spec"]}

    cluster.apply([
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": ns},
         "spec": {"template": template(use, "Never")}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "serve"}},
                  "template": template(serve, "Always")}}])
    job = cluster.wait_finished(ns, "j-0", timeout=20)
    assert (job.phase, job.init_containers[0].reason) == ("Succeeded", "Completed")
    assert list(cluster.logs(ns, "j-0")) == ["prepared\n"]
    dep = cluster.wait_ready(ns, selector={"app": "serve"}, timeout=20)
    assert [(s.name, s.init_containers[0].exit_code) for s in dep] == [("d-0", 0)]


def test_exec_runs_in_the_containers_own_view(cluster: LocalCluster, ns: str) -> None:
    # One emptyDir, mounted by two containers at different paths. The second path's parent
    # (/tmp) also holds this cluster's state directory, which the container's private overlay
    # of /tmp must not hide from the bind mount (else the emptyDir would not be shared).
    hold = "/var/run/ztfl/hold"
    peer_path = f"/tmp/ztlc-hold-{ns}"
    cluster.apply(pod(ns, "fl-server", [
        container("fl-server", WAIT_FOR, f"{hold}/go",
                  volumeMounts=[{"name": "hold", "mountPath": hold}]),
        container("peer", WAIT_FOR, f"{peer_path}/go",
                  volumeMounts=[{"name": "hold", "mountPath": peer_path}]),
    ], volumes=("hold",)))
    cluster.wait_ready(ns, names=["fl-server"], timeout=20)
    # Each container sees its own mounts only, and the pod's resolv.conf and hostname.
    assert cluster.exec(ns, "fl-server", ["test", "-d", hold], container="fl-server").rc == 0
    assert cluster.exec(ns, "fl-server", ["test", "-e", hold], container="peer").rc == 1
    assert cluster.exec(ns, "fl-server", ["test", "-d", peer_path], container="peer").rc == 0
    rc, out, _ = cluster.exec(ns, "fl-server", ["cat", "/etc/resolv.conf"], container="peer")
    assert rc == 0 and f"search {ns}.svc.cluster.local" in out, out
    assert cluster.exec(ns, "fl-server", ["hostname"], container="peer").out == "fl-server\n"
    rc, _, err = cluster.exec(ns, "fl-server", ["touch", f"{hold}/go"], container="fl-server")
    assert rc == 0, err
    s = cluster.wait_finished(ns, "fl-server", timeout=20)
    assert (s.phase, [c.exit_code for c in s.containers]) == ("Succeeded", [0, 0])
    assert list(cluster.logs(ns, "fl-server", container="fl-server")) == [f"seen {hold}/go\n"]
    assert list(cluster.logs(ns, "fl-server", container="peer")) == [f"seen {peer_path}/go\n"]
    # The mount points and the file exist in the pod only.
    assert not Path(f"{hold}/go").exists() and not Path(peer_path).exists()


def test_annotations_are_kept_for_overlays(cluster: LocalCluster, ns: str) -> None:
    idle = container("idle", "import time\ntime.sleep(60)")
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "d", "namespace": ns},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"},
                                              "annotations": {"ztfl.io/net-profile": "lte"}},
                                 "spec": {"terminationGracePeriodSeconds": 1,
                                          "containers": [idle]}}}}
    cluster.apply([pod(ns, "a", [idle], volumes=(), annotations={
        "ztfl.io/net-profile": "wan-50ms", "other": "x"}), pod(ns, "b", [idle], volumes=()),
        dep])
    view = cluster.view()
    assert view.pod(ns, "a").annotations == {"ztfl.io/net-profile": "wan-50ms", "other": "x"}
    assert view.pod(ns, "b").annotations == {}
    assert view.pod(ns, "d-0").annotations == {"ztfl.io/net-profile": "lte"}


def test_touch_from_outside_reaches_the_container_through_its_volume(
        cluster: LocalCluster, ns: str) -> None:
    """``touch`` (CreatesFiles, how the harness releases held rounds) creates the file in the
    writable volume's host directory: the container sees it at its own path. A path in no
    writable volume (the container's root, a read-only mount) is refused, not created."""
    hold, ro = "/var/run/ztlc/hold", "/var/run/ztlc/ro"
    cluster.apply(pod(ns, "held", [
        container("main", WAIT_FOR, f"{hold}/sub/go", volumeMounts=[
            {"name": "hold", "mountPath": hold}, {"name": "ro", "mountPath": ro,
                                                  "readOnly": True}])],
        volumes=("hold", "ro")))
    cluster.wait_ready(ns, names=["held"], timeout=20)
    assert cluster.exec(ns, "held", ["mkdir", f"{hold}/sub"]).rc == 0
    assert not cluster.touch(ns, "held", "main", f"{ro}/go")
    assert not cluster.touch(ns, "held", "main", "/etc/ztlc-go")
    assert not cluster.touch(ns, "held", "main", f"{hold}-other/go")  # a prefix, not a parent
    assert cluster.exec(ns, "held", ["test", "-e", f"{ro}/go"]).rc == 1
    assert cluster.touch(ns, "held", "main", f"{hold}/sub/go")
    s = cluster.wait_finished(ns, "held", timeout=20)
    assert [c.exit_code for c in s.containers] == [0]
    assert list(cluster.logs(ns, "held")) == [f"seen {hold}/sub/go\n"]
    assert not Path(f"{hold}/sub/go").exists()
