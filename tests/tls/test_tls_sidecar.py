"""Sidecar mTLS on real network namespaces: stunnel + nftables redirects around plaintext apps.

One node (bridge) with a server pod and a client pod. The server pod runs plaintext apps (gRPC
probe on 50051, TCP echo on 7000) bound to 0.0.0.0 and an inbound proxy; the client pod runs
an outbound proxy per test. Namespaces are ``zttl<random>-*`` and removed at teardown.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sidecar_support import remove_redirect
from tls_helpers import NS, PKI, SERVER_SA, Procs, read_until

from k8s_fixtures.local.topology import Node, PodLink, netns_exec
from k8s_fixtures.tls import reasons as r
from k8s_fixtures.tls.capture import WireCapture, capture_during
from k8s_fixtures.tls.probe import probe_argv
from k8s_fixtures.tls.secret import TLSFiles
from k8s_fixtures.tls.sidecar import (
    SidecarSpec,
    apply_redirect,
    start_proxy,
    wait_listening,
)
from k8s_fixtures.tls.stunnel_log import stunnel_accepted_subjects, stunnel_handshake_failures

pytestmark = pytest.mark.privileged

GRPC_PORT, ECHO_PORT = 50051, 7000
PATTERN = bytes.fromhex("5a7e5eed") + b"ZTFL-PLAINTEXT-CANARY"


@dataclass
class Mesh:
    node: Node
    srv: PodLink
    cli: PodLink
    server_spec: SidecarSpec
    server_log: Path
    workdir: Path
    procs: Procs

    def client_spec(self, files: TLSFiles, send_cert: bool = True) -> SidecarSpec:
        return SidecarSpec(pod="cli", files=files, outbound_ports=(GRPC_PORT, ECHO_PORT),
                           server_peers=(f"{SERVER_SA}.{NS}.svc.cluster.local",),
                           send_cert=send_cert)

    def in_client(self, *args: str) -> dict[str, object]:
        """Run a probe in the client pod; its JSON result."""
        p = subprocess.run(netns_exec(self.cli.netns, *probe_argv(*args)), capture_output=True,
                           text=True, timeout=60)
        assert p.stdout, f"probe {args[0]} printed nothing: {p.stderr[-800:]}"
        return json.loads(p.stdout.splitlines()[-1])  # type: ignore[no-any-return]

    def server_log_since(self, offset: int) -> str:
        return self.server_log.read_text(errors="replace")[offset:]


@pytest.fixture(scope="module")
def mesh(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    work = tmp_path_factory.mktemp("sidecar")
    node = Node(prefix=f"zttl{uuid.uuid4().hex[:6]}")
    procs = Procs()
    try:
        node.create()
        srv, cli = node.add_pod("srv"), node.add_pod("cli")
        for argv, port in ((["grpc-server", "--port", str(GRPC_PORT), "--workers", "2"],
                            GRPC_PORT), (["echo-server", "--port", str(ECHO_PORT)], ECHO_PORT)):
            app = procs.add(subprocess.Popen(netns_exec(srv.netns, *probe_argv(*argv)),
                                             stdout=subprocess.DEVNULL))
            wait_listening(app, srv.netns, [port], what=f"probe {argv[0]}")
        spec = SidecarSpec(pod="srv", files=pki.server, inbound_ports=(GRPC_PORT, ECHO_PORT),
                           allowed_peers=(pki.client_id,))
        apply_redirect(srv.netns, spec)
        procs.add(start_proxy(srv.netns, spec, work / "srv"))
        yield Mesh(node, srv, cli, spec, work / "srv" / "stunnel.log", work, procs)
    finally:
        procs.stop_all()
        node.destroy()


@pytest.fixture
def client_proxy(mesh: Mesh, procs: Procs) -> Iterator[Callable[[TLSFiles, bool], None]]:
    """Start the client pod's outbound proxy with given material; removed after the test."""
    def start(files: TLSFiles, send_cert: bool = True) -> None:
        spec = mesh.client_spec(files, send_cert)
        apply_redirect(mesh.cli.netns, spec)
        procs.add(start_proxy(mesh.cli.netns, spec, mesh.workdir / f"cli-{uuid.uuid4().hex}"))

    yield start
    procs.stop_all()
    remove_redirect(mesh.cli.netns)


def test_plaintext_apps_talk_through_both_sidecars(
        mesh: Mesh, pki: PKI, client_proxy: Callable[[TLSFiles, bool], None]) -> None:
    client_proxy(pki.client, True)
    offset = len(mesh.server_log.read_text())
    res = mesh.in_client("grpc-call", "--target", f"{mesh.srv.ip}:{GRPC_PORT}", "--size", "1000")
    assert res["ok"], res
    # The app saw plaintext from the proxy (no peer identity); the proxy saw the client's.
    assert json.loads(str(res["reply"])) == {"n": 1000, "peer": []}
    echo = mesh.in_client("tcp-call", "--target", f"{mesh.srv.ip}:{ECHO_PORT}",
                          "--data", PATTERN.hex())
    assert echo["ok"], echo
    log = mesh.server_log_since(offset)
    assert stunnel_accepted_subjects(log) == [
        f"CN=fl-client.{NS}.serviceaccount.identity.cluster.local"] * 2
    assert stunnel_handshake_failures(log) == []


def test_no_plaintext_on_the_wire_only_with_sidecars(
        mesh: Mesh, pki: PKI, client_proxy: Callable[[TLSFiles, bool], None]) -> None:
    size = 256 * 1024
    call = ("grpc-call", "--target", f"{mesh.srv.ip}:{GRPC_PORT}", "--size", str(size),
            "--pattern", PATTERN.hex())
    client_proxy(pki.client, True)
    with WireCapture(mesh.node.netns, "br0", marker_to=mesh.srv.ip,
                     workdir=mesh.workdir, name="on") as cap:
        assert mesh.in_client(*call)["ok"]
    on = cap.verdict(PATTERN)
    assert on.tcp_payload_bytes >= size, on  # the capture really saw the transfer
    assert not on.pattern_seen
    assert on.all_tls, on.plaintext_flows
    assert any(f.tls13 for f in on.flows)

    remove_redirect(mesh.srv.netns)
    remove_redirect(mesh.cli.netns)
    try:
        off = capture_during(mesh.node.netns, "br0", lambda: mesh.in_client(*call), PATTERN,
                             marker_to=mesh.srv.ip, workdir=mesh.workdir, name="off")
    finally:
        apply_redirect(mesh.srv.netns, mesh.server_spec)
    assert off.tcp_payload_bytes >= size, off
    assert off.pattern_seen and not off.all_tls, off.flows  # the proof can see a hole


@pytest.mark.parametrize(("case", "send_cert", "reason"), [
    ("client", False, r.NO_CLIENT_CERT),
    ("other_ca", True, r.UNKNOWN_CA),
    ("expired", True, r.EXPIRED),
    ("rogue", True, r.IDENTITY_REJECTED),
    ("other_ca_only", True, r.PEER_ALERT),  # trusts only its own CA: it aborts first
])
def test_client_proxy_refused_with_reason(
        mesh: Mesh, pki: PKI, client_proxy: Callable[[TLSFiles, bool], None],
        case: str, send_cert: bool, reason: str) -> None:
    client_proxy(getattr(pki, case), send_cert)
    offset = len(mesh.server_log.read_text())
    echo = mesh.in_client("tcp-call", "--target", f"{mesh.srv.ip}:{ECHO_PORT}",
                          "--data", PATTERN.hex())
    assert not echo["ok"] and not echo["reply"], echo
    text = read_until(mesh.server_log,
                      lambda t: bool(stunnel_handshake_failures(t[offset:])))
    got = stunnel_handshake_failures(text[offset:])
    assert [f.reason for f in got] == [reason], got
    assert got[0].peer.startswith(f"{mesh.cli.ip}:")


def test_plaintext_client_without_sidecar_is_refused(mesh: Mesh) -> None:
    offset = len(mesh.server_log.read_text())
    res = mesh.in_client("grpc-call", "--target", f"{mesh.srv.ip}:{GRPC_PORT}",
                         "--timeout", "5")
    assert not res["ok"] and res["code"] == "UNAVAILABLE", res
    text = read_until(mesh.server_log,
                      lambda t: bool(stunnel_handshake_failures(t[offset:])))
    assert {f.reason for f in stunnel_handshake_failures(text[offset:])} == {r.NOT_TLS}


def _nft(netns: str, script: str) -> None:
    subprocess.run(netns_exec(netns, "nft", "-f", "-"), input=script, text=True, check=True,
                   capture_output=True)


def _deny_all_but(hook: str, rule: str) -> str:
    return (f"table inet zttl_np\ndelete table inet zttl_np\ntable inet zttl_np {{\n"
            f" chain c {{\n  type filter hook {hook} priority 0; policy drop;\n"
            f"  ct state established,related accept\n"
            f"  {'iif' if hook == 'input' else 'oif'} lo accept\n  {rule}\n }}\n}}\n")


@pytest.mark.parametrize(("pod", "hook", "rule", "allowed"), [
    # What a NetworkPolicy compiler must know about the redirects (see README.md): filter
    # chains see the *redirected* tuple, so rules must match the conntrack original one.
    ("srv", "input", f"tcp dport {ECHO_PORT} accept", False),
    ("srv", "input", f"meta l4proto tcp ct original proto-dst {ECHO_PORT} accept", True),
    ("cli", "output", f"ip daddr {{srv}} tcp dport {ECHO_PORT} accept", False),
    ("cli", "output",
     f"meta l4proto tcp ct original ip daddr {{srv}} ct original proto-dst {ECHO_PORT} accept",
     True),
])
def test_policy_rules_must_match_the_original_tuple(
        mesh: Mesh, pki: PKI, client_proxy: Callable[[TLSFiles, bool], None],
        pod: str, hook: str, rule: str, allowed: bool) -> None:
    client_proxy(pki.client, True)
    netns = mesh.srv.netns if pod == "srv" else mesh.cli.netns
    _nft(netns, _deny_all_but(hook, rule.format(srv=mesh.srv.ip)))
    try:
        echo = mesh.in_client("tcp-call", "--target", f"{mesh.srv.ip}:{ECHO_PORT}",
                              "--data", PATTERN.hex(), "--timeout", "1")
    finally:
        subprocess.run(netns_exec(netns, "nft", "delete", "table", "inet", "zttl_np"),
                       capture_output=True)
    assert echo["ok"] is allowed, echo
