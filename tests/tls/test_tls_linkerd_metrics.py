"""Mesh mode's server-side evidence: Linkerd proxy metrics parsed by
:mod:`k8s_fixtures.tls.linkerd_metrics`, and the mesh proofs of :mod:`k8s_fixtures.proofs` judged
from them (with a scripted stand-in for the cluster: no API server, no Linkerd here).

Where the metrics text comes from (nothing here was scraped from a live proxy on this machine):

* the ``tcp_open_total`` label set is, verbatim, the one linkerd2-proxy asserts in its test
  ``server_labels`` (``linkerd/app/core/src/transport/labels.rs`` at linkerd/linkerd2-proxy
  commit 030fa28d5563a634d637438c39b005a9f8159407);
* the ``# HELP`` lines and metric names are verbatim from
  ``linkerd/app/inbound/src/metrics/authz.rs`` (linkerd/linkerd2-proxy commit
  1252ca721e027836a516f5d11b5e6cef75fd4f2a); the authz label sets follow that file's formatting
  (target labels, then the server's ``srv_*``, the route's ``route_*`` for HTTP, the
  authorization's ``authz_*`` for allows, then the TLS labels of ``TlsAccept`` in
  ``labels.rs``: ``tls="true",client_id=...`` or ``tls="no_identity",no_tls_reason=...``), with
  the values of that test and the ``default``/``all-unauthenticated`` server of the admin port
  that linkerd2's integration tests expect (``test/integration/opaqueports``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from k8s_fixtures.cluster import ContainerStatus, ExecResult, PodStatus
from k8s_fixtures.proofs import IDENTITY, NOCERT, ProofPlan
from k8s_fixtures.proofs.mesh import METRICS_SCRIPT, judge_mesh_round, mesh_proofs
from k8s_fixtures.tls import linkerd_metrics as lm
from k8s_fixtures.tls import mesh

SCRAPE = """\
# HELP inbound_http_authz_allow_total The total number of inbound HTTP requests that were authorized
# TYPE inbound_http_authz_allow_total counter
inbound_http_authz_allow_total{target_addr="192.0.2.4:40000",target_ip="192.0.2.4",target_port="40000",srv_group="policy.linkerd.io",srv_kind="server",srv_name="testserver",srv_port="40000",route_group="",route_kind="default",route_name="default",authz_group="policy.linkerd.io",authz_kind="authorizationpolicy",authz_name="testauthz",tls="true",client_id="foo.id.example.com"} 5
inbound_http_authz_allow_total{target_addr="0.0.0.0:4191",target_ip="0.0.0.0",target_port="4191",srv_group="",srv_kind="default",srv_name="all-unauthenticated",srv_port="4191",route_group="",route_kind="default",route_name="probe",authz_group="",authz_kind="default",authz_name="probe",tls="no_identity",no_tls_reason="no_tls_from_remote"} 40
# HELP inbound_http_authz_deny_total The total number of inbound HTTP requests that could not be processed due to a proxy error.
# TYPE inbound_http_authz_deny_total counter
inbound_http_authz_deny_total{target_addr="192.0.2.4:40000",target_ip="192.0.2.4",target_port="40000",srv_group="policy.linkerd.io",srv_kind="server",srv_name="testserver",srv_port="40000",route_group="",route_kind="default",route_name="default",tls="no_identity",no_tls_reason="no_tls_from_remote"} 1
# HELP inbound_tcp_authz_deny_total The total number of inbound TCP connections that were denied
# TYPE inbound_tcp_authz_deny_total counter
inbound_tcp_authz_deny_total{target_addr="192.0.2.4:40000",target_ip="192.0.2.4",target_port="40000",srv_group="policy.linkerd.io",srv_kind="server",srv_name="testserver",srv_port="40000",tls="true",client_id="bar.id.example.com"} 2
# HELP tcp_open_total Total count of opened connections
# TYPE tcp_open_total counter
tcp_open_total{direction="inbound",peer="src",target_addr="192.0.2.4:40000",target_ip="192.0.2.4",target_port="40000",tls="true",client_id="foo.id.example.com",srv_group="policy.linkerd.io",srv_kind="server",srv_name="testserver",srv_port="40000"} 3
tcp_open_total{direction="outbound",peer="dst",target_addr="192.0.2.9:40000",target_ip="192.0.2.9",target_port="40000",tls="true",server_id="x.id.example.com"} 7
"""  # noqa: E501


def test_parse_prometheus_reads_names_labels_values_and_skips_the_rest() -> None:
    text = SCRAPE + 'esc{a="q\\"uote",b="back\\\\slash"} 1 1700000000000\nbroken{a=1} 2\n'
    samples = lm.parse_prometheus(text)
    assert [s.name for s in samples].count("tcp_open_total") == 2
    esc = next(s for s in samples if s.name == "esc")
    assert esc.labels == {"a": 'q"uote', "b": "back\\slash"} and esc.value == 1.0
    assert not any(s.name == "broken" for s in samples)
    first = samples[0]
    assert first.labels["client_id"] == "foo.id.example.com" and first.value == 5.0


def test_authz_decisions_of_one_port() -> None:
    got = sorted(lm.authz_decisions(SCRAPE, 40000), key=lambda d: (d.verdict, d.peer))
    assert [(d.verdict, d.layer, d.peer, d.meshed, d.count) for d in got] == [
        ("allow", "http", "foo.id.example.com", True, 5.0),
        ("deny", "http", "<no_identity: no_tls_from_remote>", False, 1.0),
        ("deny", "tcp", "bar.id.example.com", True, 2.0),
    ]
    assert got[0].server == "server/testserver"
    assert got[0].authz == "authorizationpolicy/testauthz" and got[1].authz == ""
    # the admin port's probe traffic is another port: not counted for the app port
    assert [d.peer for d in lm.authz_decisions(SCRAPE, 4191)] == [
        "<no_identity: no_tls_from_remote>"
    ]


def test_new_decisions_is_the_difference_of_two_scrapes() -> None:
    after = SCRAPE.replace('client_id="foo.id.example.com"} 5', 'client_id="foo.id.example.com"} 7')
    after += (
        'inbound_http_authz_deny_total{target_port="40000",tls="true",'
        'client_id="new.id.example.com"} 1\n'
    )
    new = lm.new_decisions(SCRAPE, after, 40000)
    assert new == {("allow", "foo.id.example.com"): 2.0, ("deny", "new.id.example.com"): 1.0}
    assert lm.describe(new, "allow") == "2 x foo.id.example.com"
    assert lm.describe({}, "deny") == "none"
    assert lm.new_decisions(after, SCRAPE, 40000) == {}  # a restarted proxy shows nothing new


def test_peer_without_a_mesh_identity() -> None:
    assert lm.peer_of({"tls": "disabled"}) == "<disabled>"
    assert lm.peer_of({"tls": "opaque", "sni": "x"}) == "<opaque: x>"


# ----------------------------------------------------------------------- proofs from metrics

NS = "ztfl-sec3-net0-iid-s0-mesh"
CLIENT_ID = mesh.identity(NS, "fl-client")
STRANGER_ID = mesh.identity(NS, "ztfl-probe-other")


def _scrape(counts: dict[tuple[str, str], int], port: int = 50051) -> str:
    """Render counters in the proxy's format (see the module docstring)."""
    lines = []
    for (verdict, peer), n in counts.items():
        tls = (f'tls="true",client_id="{peer}"' if not peer.startswith("<")
               else 'tls="no_identity",no_tls_reason="no_tls_from_remote"')
        authz = ('authz_group="policy.linkerd.io",authz_kind="authorizationpolicy",'
                 'authz_name="fl-server-grpc-clients",' if verdict == "allow" else "")
        lines.append(
            f'inbound_http_authz_{verdict}_total{{target_addr="10.244.0.9:{port}",'
            f'target_ip="10.244.0.9",target_port="{port}",srv_group="policy.linkerd.io",'
            f'srv_kind="server",srv_name="fl-server-grpc",srv_port="{port}",route_group="",'
            f'route_kind="default",route_name="default",{authz}{tls}}} {n}')
    return "\n".join(lines) + "\n"


def test_judge_mesh_round() -> None:
    ok, admitted = judge_mesh_round(
        _scrape({("allow", CLIENT_ID): 30, ("deny", "<x>"): 1}), NS, 50051)
    assert ok.passed and ok.name == "mesh-mtls" and admitted == [CLIENT_ID]
    assert "denied 1 x <no_identity: no_tls_from_remote>" in ok.detail
    plain, _ = judge_mesh_round(_scrape({("allow", CLIENT_ID): 3, ("allow", "<x>"): 1}), NS, 50051)
    assert not plain.passed and "admitted without the fl-client identity" in plain.detail
    other, _ = judge_mesh_round(_scrape({("allow", STRANGER_ID): 3}), NS, 50051)
    assert not other.passed
    nothing, admitted = judge_mesh_round(_scrape({("deny", "<x>"): 3}), NS, 50051)
    assert not nothing.passed and admitted == []


class ScriptedMesh:
    """The Cluster calls mesh_proofs makes, answered as a meshed server with (``enforce``) or
    without the harness's Linkerd policy would answer them. Not an API server: it returns what
    the probe programs and the proxy's metrics endpoint print."""

    def __init__(self, enforce: bool = True, injected: bool = True, native: bool = False) -> None:
        self.enforce, self.injected, self.native = enforce, injected, native
        self.counts: dict[tuple[str, str], int] = {("allow", CLIENT_ID): 4}  # clients joined
        self.calls: list[str] = []

    def pod_status(self, namespace: str, pod: str) -> PodStatus:
        proxy = [ContainerStatus(mesh.PROXY_CONTAINER, "running", True)] if self.injected else []
        app = [ContainerStatus(pod, "running", True)]
        if self.native:  # Linkerd's native-sidecar injection: the proxy is an init container
            return PodStatus(namespace, pod, "Running", "10.244.0.9", True, tuple(app),
                             init_containers=tuple(proxy))
        return PodStatus(namespace, pod, "Running", "10.244.0.9", True, (*app, *proxy))

    def exec(self, namespace: str, pod: str, argv: list[str], *, container: str | None = None,
             timeout: float = 30.0, input: str | None = None) -> ExecResult:
        if argv[-1] == METRICS_SCRIPT:
            return ExecResult(0, _scrape(self.counts), "")
        self.calls.append(pod)
        peer = {"fl-client-0": CLIENT_ID, NOCERT: "<none>", IDENTITY: STRANGER_ID}[pod]
        allowed = peer == CLIENT_ID or not self.enforce
        key = ("allow" if allowed else "deny", peer)
        self.counts[key] = self.counts.get(key, 0) + 1
        code = "UNIMPLEMENTED" if allowed else "PERMISSION_DENIED"  # FL app / proxy's 403
        return ExecResult(1, json.dumps({"ok": False, "code": code}), "")


PLAN = ProofPlan(namespace=NS, python=("python",), image="img", netpol=True, tls="mesh")


def _by_name(cluster: Any) -> dict[str, Any]:
    return {p.name: p for p in mesh_proofs(cluster, PLAN, settle=0)}


@pytest.mark.parametrize("native", [False, True], ids=["sidecar-container", "native-sidecar"])
def test_mesh_proofs_pass_when_linkerd_enforces_the_policy(native: bool) -> None:
    cluster = ScriptedMesh(native=native)
    got = _by_name(cluster)
    assert {n: (p.expect, p.passed) for n, p in got.items()} == {
        "identity-accepted": ("accepted", True),
        "no-cert-refused": ("refused", True),
        "identity-refused": ("refused", True),
    }, got
    assert cluster.calls == ["fl-client-0", NOCERT, IDENTITY]
    assert f"denied 1 x {STRANGER_ID}" in got["identity-refused"].detail
    assert "PERMISSION_DENIED" in got["no-cert-refused"].detail


def test_mesh_proofs_fail_when_the_server_admits_everyone() -> None:
    got = _by_name(ScriptedMesh(enforce=False))
    assert got["identity-accepted"].passed
    assert not got["no-cert-refused"].passed and not got["identity-refused"].passed
    assert "UNIMPLEMENTED" in got["no-cert-refused"].detail


def test_mesh_proofs_fail_with_the_reason_when_nothing_was_injected() -> None:
    cluster = ScriptedMesh(injected=False)
    got = _by_name(cluster)
    assert not any(p.passed for p in got.values()) and cluster.calls == []
    assert all("no linkerd-proxy container" in p.detail for p in got.values())
