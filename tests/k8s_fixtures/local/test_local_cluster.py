"""The local backend on real namespaces: DNS, limits, logs, exit codes, volumes, overlays.

All tests share one cluster (module scope, as the harness reuses a session cluster); each
gets its own Kubernetes namespace, deleted afterwards.
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

from k8s_fixtures.cluster import ClusterError, ManifestError, Obj
from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.local.view import ClusterView

pytestmark = pytest.mark.privileged
_counter = itertools.count()

SERVER = (
    "import http.server, socket\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = socket.gethostname().encode()\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
    "    def log_message(self, *a): pass\n"
    "http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n"
)


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(ns: str, name: str, script: str, *, labels: dict[str, str] | None = None,
        restart: str = "Never", **container: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "command": [PY, "-c", script],
                                     **container}]}}


def web(ns: str, name: str = "web", labels: dict[str, str] | None = None) -> Obj:
    return pod(ns, name, SERVER, labels=labels or {"app": "web"}, restart="Always",
               ports=[{"name": "http", "containerPort": 8080}],
               readinessProbe={"tcpSocket": {"port": "http"}})


def service(ns: str, name: str = "web", selector: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector or {"app": "web"}, "ports": [{"port": 8080}]}}


def fetch(url: str) -> str:
    """A client script printing a JSON result line for one HTTP GET by name."""
    return (
        "import json, socket, urllib.request\n"
        "try:\n"
        f"    body = urllib.request.urlopen({url!r}, timeout=5).read().decode()\n"
        "    print(json.dumps({'ok': body}))\n"
        "except OSError as e:\n"
        "    print(json.dumps({'error': type(e).__name__ + ': ' + str(e)}))\n"
    )


def result(cluster: LocalCluster, ns: str, name: str) -> dict[str, str]:
    status = cluster.wait_finished(ns, name, timeout=30)
    out = "".join(cluster.logs(ns, name))
    assert status.exit_code == 0, out
    parsed: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return parsed


@pytest.fixture
def ns(cluster: LocalCluster) -> Iterator[str]:
    name = f"t{next(_counter)}"
    cluster.apply(namespace(name))
    yield name
    cluster.delete(namespace=name)
    assert not [p for p in netns_named(cluster.name) if f"-{name}." in p]


def test_pods_reach_each_other_by_service_name(cluster: LocalCluster, ns: str) -> None:
    cluster.apply([web(ns), service(ns)])
    cluster.wait_ready(ns, names=["web"], timeout=20)
    cluster.apply([pod(ns, "short", fetch("http://web:8080/")),
                   pod(ns, "fqdn", fetch(f"http://web.{ns}.svc.cluster.local:8080/"))])
    assert result(cluster, ns, "short") == {"ok": "web"}
    assert result(cluster, ns, "fqdn") == {"ok": "web"}


def test_other_namespace_needs_the_namespace_suffix(cluster: LocalCluster, ns: str) -> None:
    other = f"{ns}-other"
    cluster.apply([web(ns), service(ns), namespace(other)])
    try:
        cluster.wait_ready(ns, names=["web"], timeout=20)
        cluster.apply([pod(other, "short", fetch("http://web:8080/")),
                       pod(other, "suffixed", fetch(f"http://web.{ns}:8080/"))])
        short = result(cluster, other, "short")
        assert "Name or service not known" in short.get("error", ""), short
        assert result(cluster, other, "suffixed") == {"ok": "web"}
    finally:
        cluster.delete(namespace=other)


def test_dns_follows_deployment_scaling(cluster: LocalCluster, ns: str) -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": ns},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": web(ns)["spec"]}}}
    cluster.apply([dep, service(ns)])
    ready = cluster.wait_ready(ns, selector={"app": "web"}, timeout=20)
    assert [s.name for s in ready] == ["web-0", "web-1", "web-2"]
    lookup = ("import socket\nprint(' '.join(sorted({a[4][0] for a in "
              f"socket.getaddrinfo('web.{ns}.svc.cluster.local', 80, socket.AF_INET)}})))")
    cluster.apply(pod(ns, "dig3", lookup))
    cluster.wait_finished(ns, "dig3", timeout=20)
    assert "".join(cluster.logs(ns, "dig3")).split() == sorted(s.ip or "" for s in ready)
    dep["spec"]["replicas"] = 1
    cluster.apply(dep)
    assert [s.name for s in cluster.pods(ns, selector={"app": "web"})] == ["web-0"]
    cluster.apply(pod(ns, "dig1", lookup))
    cluster.wait_finished(ns, "dig1", timeout=20)
    assert "".join(cluster.logs(ns, "dig1")).split() == [ready[0].ip]


def test_logs_and_exit_codes_come_back(cluster: LocalCluster, ns: str) -> None:
    cluster.apply(pod(ns, "fails", "import sys\nprint('to stdout', flush=True)\n"
                                   "print('to stderr', file=sys.stderr)\nsys.exit(3)"))
    status = cluster.wait_finished(ns, "fails", timeout=20)
    assert (status.phase, status.exit_code, status.reason) == ("Failed", 3, "Error")
    assert list(cluster.logs(ns, "fails")) == ["to stdout\n", "to stderr\n"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job", "namespace": ns},
           "spec": {"template": {"metadata": {"labels": {"job": "j"}},
                                 "spec": pod(ns, "x", "print('done')")["spec"]}}}
    cluster.apply(job)
    done = cluster.wait_finished(ns, "job-0", timeout=20)
    assert (done.phase, done.reason, done.labels) == ("Succeeded", "Completed", {"job": "j"})
    cluster.delete(pod(ns, "fails", ""))
    cluster.delete(job)
    assert cluster.pods(ns) == []
    with pytest.raises(ClusterError, match=rf"pod {ns}/fails does not exist"):
        cluster.pod_status(ns, "fails")


def test_follow_streams_until_the_container_ends(cluster: LocalCluster, ns: str) -> None:
    cluster.apply(pod(ns, "ticker", "import time\nfor i in range(5):\n"
                                    "    print(i, flush=True); time.sleep(0.1)"))
    lines = list(cluster.logs(ns, "ticker", follow=True, timeout=20))
    assert lines == [f"{i}\n" for i in range(5)]
    assert cluster.pod_status(ns, "ticker").phase == "Succeeded"


def test_restart_policy_counts_restarts(cluster: LocalCluster, ns: str) -> None:
    cluster.apply(pod(ns, "crash", "raise SystemExit(1)", restart="OnFailure"))
    deadline = time.monotonic() + 20
    while cluster.pod_status(ns, "crash").restart_count < 2:
        assert time.monotonic() < deadline, cluster.pod_status(ns, "crash")
        time.sleep(0.05)
    s = cluster.pod_status(ns, "crash")
    assert (s.phase, s.exit_code, s.reason) == ("Running", 1, "Error")


def test_memory_limit_gives_oomkilled(cluster: LocalCluster, ns: str) -> None:
    hog = "x = []\nwhile True:\n    x.append(bytearray(8 << 20))"
    cluster.apply(pod(ns, "hog", hog, resources={"limits": {"memory": "48Mi"}}))
    status = cluster.wait_finished(ns, "hog", timeout=30)
    assert (status.phase, status.reason, status.exit_code) == ("Failed", "OOMKilled", 137)


def test_cpu_limit_throttles_a_busy_loop(cluster: LocalCluster, ns: str) -> None:
    # The pod measures its own CPU time over wall time; the cgroup's cpuacct counter gives
    # an independent second measurement from outside.
    busy = ("import time, json\nw0, c0 = time.monotonic(), time.process_time()\n"
            "while time.monotonic() - w0 < 3: pass\n"
            "print(json.dumps((time.process_time() - c0) / (time.monotonic() - w0)))")
    cluster.apply(pod(ns, "busy", busy, resources={"limits": {"cpu": "300m"}}))
    cluster.wait_ready(ns, names=["busy"], timeout=20)
    u0, t0 = cluster.cpu_usage_ns(ns, "busy"), time.monotonic()
    status = cluster.wait_finished(ns, "busy", timeout=30)
    u1, t1 = cluster.cpu_usage_ns(ns, "busy"), time.monotonic()
    assert status.exit_code == 0
    inside = float("".join(cluster.logs(ns, "busy")).strip())
    assert u0 is not None and u1 is not None
    outside = (u1 - u0) / 1e9 / (t1 - t0)
    assert 0.24 <= inside <= 0.36, f"pod measured CPU share {inside:.3f}, limit 0.3"
    assert 0.2 <= outside <= 0.36, f"cgroup measured CPU share {outside:.3f}, limit 0.3"


def test_usage_reports_each_containers_cpu_and_peak_memory(cluster: LocalCluster, ns: str) -> None:
    # 96 MiB touched page by page, then a second of busy loop: the cgroup must show both.
    prog = ("import time\nb = bytearray(96 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            "w = time.monotonic()\nwhile time.monotonic() - w < 1: pass\nprint('done')")
    cluster.apply(pod(ns, "hog", prog))
    status = cluster.wait_finished(ns, "hog", timeout=30)
    assert status.exit_code == 0
    (use,) = cluster.usage(ns)["hog"].values()
    assert use.cpu_ns is not None and use.cpu_ns >= 0.8e9, use
    assert use.memory_peak_bytes is not None and use.memory_peak_bytes >= 96 << 20, use
    assert cluster.usage("no-such-namespace") == {}


def test_configmap_secret_volumes_and_env(cluster: LocalCluster, ns: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns},
          "data": {"rounds": "5", "mode": "fedavg"}}
    sec = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": ns},
           "data": {"tls.key": "c2VjcmV0LWtleQ=="}, "stringData": {"token": "t0k"}}
    read = ("import os, json\nprint(json.dumps({'files': sorted(os.listdir('/etc/ztlc-cfg')),"
            " 'rounds': open('/etc/ztlc-cfg/rounds').read(),"
            " 'key': open('/var/lib/ztlc-tls/tls.key').read(),"
            " 'mode': oct(os.stat('/var/lib/ztlc-tls/tls.key').st_mode & 0o777),"
            " 'token': os.environ['TOKEN'], 'plain': os.environ['PLAIN']}))")
    p = pod(ns, "reader", read,
            env=[{"name": "PLAIN", "value": "v"},
                 {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tls", "key": "token"}}}],
            volumeMounts=[{"name": "cfg", "mountPath": "/etc/ztlc-cfg", "readOnly": True},
                          {"name": "tls", "mountPath": "/var/lib/ztlc-tls"}])
    p["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "cfg"}},
                            {"name": "tls", "secret": {"secretName": "tls", "defaultMode": 0o400}}]
    cluster.apply([cm, sec, p])
    assert result(cluster, ns, "reader") == {
        "files": ["mode", "rounds"], "rounds": "5", "key": "secret-key", "mode": "0o400",
        "token": "t0k", "plain": "v"}
    # The mount points exist only inside the pod, never on the machine.
    assert not Path("/etc/ztlc-cfg").exists() and not Path("/var/lib/ztlc-tls").exists()


def test_exec_returns_code_and_output(cluster: LocalCluster, ns: str) -> None:
    cluster.apply(web(ns))
    cluster.wait_ready(ns, names=["web"], timeout=20)
    rc, out, err = cluster.exec(ns, "web", ["sh", "-c", "hostname; echo oops >&2; exit 4"])
    assert (rc, out, err) == (4, "web\n", "oops\n")
    info = cluster.pod_info(ns, "web")
    rc, out, _ = cluster.exec(ns, "web", ["ip", "-4", "-o", "addr", "show", "eth0"])
    assert rc == 0 and f"inet {info.ip}/16" in out


class RecordingOverlay:
    """Stands in for the NetworkPolicy compiler: records what the backend tells it."""

    kinds = frozenset({"NetworkPolicy"})

    def __init__(self) -> None:
        self.views: list[ClusterView] = []
        self.fail_next = False

    def validate(self, obj: Obj) -> None:
        if "spec" not in obj:
            raise ManifestError(f"NetworkPolicy {obj['metadata']['name']}: spec: required")

    def sync(self, cluster: LocalCluster, view: ClusterView) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("compiler failed")
        self.views.append(view)

    def close(self, cluster: LocalCluster) -> None:
        pass


def test_overlay_hook_sees_pods_before_they_start(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with LocalCluster(prefix="ztlc", state_root=root, cidr="10.245.0.0/24") as c:
        policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": "deny", "namespace": "default"},
                  "spec": {"podSelector": {}}}
        with pytest.raises(ManifestError, match=r"default/deny: kind: .*none is registered"):
            c.apply(policy)
        ov = RecordingOverlay()
        c.add_overlay(ov)
        annotated = web("default")
        annotated["metadata"]["annotations"] = {"ztfl.io/net-profile": "wan"}
        c.apply([policy, annotated])
        view = ov.views[-1]
        assert view.objects["NetworkPolicy"][0]["metadata"]["name"] == "deny"
        p = view.pod("default", "web")
        assert p.phase == "Pending"  # synced before the process started
        assert p.annotations == {"ztfl.io/net-profile": "wan"}
        assert (p.labels, p.namespace_labels) == (
            {"app": "web"}, {"kubernetes.io/metadata.name": "default"})
        assert p.ports[0].name == "http" and p.netns.startswith(c.name)
        assert p.host_if and view.node_netns == c.node_netns and view.bridge == "br0"
        n = len(ov.views)
        c.apply({**namespace("labelled"), "metadata": {"name": "labelled",
                                                       "labels": {"team": "a"}}})
        assert ov.views[-1].namespaces["labelled"] == {
            "team": "a", "kubernetes.io/metadata.name": "labelled"}
        assert len(ov.views) == n + 1
        # A failing sync rolls the apply back: no pod, no namespace left.
        ov.fail_next = True
        before = sorted(netns_named(c.name))
        with pytest.raises(RuntimeError, match="compiler failed"):
            c.apply(web("default", "web2"))
        assert sorted(netns_named(c.name)) == before
        with pytest.raises(ClusterError, match="does not exist"):
            c.pod_status("default", "web2")


class DenyEgressOverlay:
    """A toy policy overlay: pods labelled ``egress: none`` may send nothing but loopback."""

    kinds: frozenset[str] = frozenset()

    def validate(self, obj: Obj) -> None:
        pass

    def sync(self, cluster: LocalCluster, view: ClusterView) -> None:
        for p in view.pods:
            if p.labels.get("egress") == "none":
                cluster.run(["ip", "netns", "exec", p.netns, "nft", "-f", "-"], input=(
                    "table inet ztlc_deny {\n chain output {\n"
                    "  type filter hook output priority 0; policy accept;\n"
                    "  oif lo accept\n  reject with icmpx admin-prohibited\n }\n}\n"))

    def close(self, cluster: LocalCluster) -> None:
        pass


def test_dns_crosses_the_pod_network(tmp_path: Path) -> None:
    # Rules installed by an overlay are in place before the pod's first packet: a policy that
    # forgets DNS egress breaks name resolution, as on a real cluster.
    with LocalCluster(prefix="ztlc", state_root=tmp_path / "s", cidr="10.245.1.0/24") as c:
        c.add_overlay(DenyEgressOverlay())
        c.apply([web("default"), service("default")])
        c.wait_ready("default", names=["web"], timeout=20)
        c.apply([pod("default", "open", fetch("http://web:8080/")),
                 pod("default", "denied", fetch("http://web:8080/"),
                     labels={"egress": "none"})])
        assert result(c, "default", "open") == {"ok": "web"}
        denied = result(c, "default", "denied")
        assert "name resolution" in denied.get("error", ""), denied
