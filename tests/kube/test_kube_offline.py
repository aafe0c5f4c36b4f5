"""The kube/kind code paths up to the first API call, and the pure helpers around them.

Runs on machines without Docker or Kubernetes: kubeconfig discovery, the reachability check
against a closed local port (the real client, a real TCP connect), the kind preconditions,
error messages, the tc commands of the netem init container, and the log/exec helpers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from kube_support import FIXTURES

from k8s_fixtures.cluster import Cluster, ClusterError, PrivilegeError
from k8s_fixtures.kube import available, create_kube, kind
from k8s_fixtures.kube.backend import KubeCluster, label_selector
from k8s_fixtures.kube.client import exec_exit_code, split_lines
from k8s_fixtures.kube.errors import api_error, cni_not_enforcing, short_cause
from k8s_fixtures.netem.init import commands, main
from k8s_fixtures.netem.profiles import get_profile
from k8s_fixtures.proofs import Proof

needs_client = pytest.mark.skipif(
    not available(env={"KUBECONFIG": "/nonexistent"})[1].startswith("no kubeconfig"),
    reason="the kubernetes Python client is not installed (pip install 'pytest-ztfl[kube]')")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()  # nothing listens there any more: connections are refused
    return port


def kubeconfig(tmp_path: Path, server: str, current: str | None = "dead") -> Path:
    p = tmp_path / "config"
    p.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: not-a-real-token}}
contexts:
- name: dead
  context: {{cluster: dead, user: u}}
{f"current-context: {current}" if current else ""}
""")
    return p


def test_available_reads_kubeconfig_without_contacting_the_server(tmp_path: Path) -> None:
    kc = kubeconfig(tmp_path, "https://127.0.0.1:1")
    ok, why = available(env={"KUBECONFIG": str(kc)})
    assert ok and why.startswith("context dead (server https://127.0.0.1:1)")
    ok, why = available("other", env={"KUBECONFIG": str(kc)})
    assert not ok and "no kubeconfig context 'other'" in why and "contexts: dead" in why
    ok, why = available(env={"KUBECONFIG": str(kubeconfig(tmp_path, "x", current=None))})
    assert not ok and "sets no current-context" in why
    ok, why = available(env={"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)})
    assert not ok and why.startswith("no kubeconfig context:")


@needs_client
def test_unreachable_cluster_fails_fast_with_the_fix(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as e:
        create_kube("dead", kubeconfig=kubeconfig(tmp_path, server))
    took = time.monotonic() - t0
    msg = str(e.value)
    assert msg.startswith(f"no reachable cluster: context 'dead' points at {server}")
    assert "(Connection refused)" in msg and "kind create cluster" in msg
    assert "\n" not in msg and took < 10


@needs_client
def test_unknown_context_is_a_kubeconfig_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"^kubeconfig context 'nope': "):
        create_kube("nope", kubeconfig=kubeconfig(tmp_path, "https://127.0.0.1:1"))


def test_kube_cluster_satisfies_the_cluster_protocol() -> None:
    cluster: Cluster = KubeCluster(SimpleNamespace(context="c"))  # type: ignore[arg-type]
    assert isinstance(cluster, Cluster) and cluster.name == "c"
    assert label_selector({"a": "1", "b": "2"}) == "a=1,b=2" and label_selector(None) is None


def test_kind_available_names_what_is_missing() -> None:
    ok, why = kind.available()
    if ok:
        pytest.skip(f"kind is usable here: {why}")
    assert why and "\n" not in why
    problems = [p for p in (kind.docker_problem(), kind.kind_problem()) if p]
    assert why == "; ".join(problems)


def test_create_kind_refuses_with_the_reason_when_unavailable() -> None:
    ok, why = kind.available()
    if ok:
        pytest.skip(f"kind is usable here: {why}")
    with pytest.raises(PrivilegeError, match=r"^kind backend: "):
        kind.create_kind("ztfl-test")


def test_kind_version_gate_and_config() -> None:
    assert kind.parse_kind_version("kind v0.24.0 go1.22.6 linux/amd64") == (0, 24, 0)
    assert kind.parse_kind_version("kind v0.17.0 go1.19.2 linux/amd64") < kind.MIN_KIND  # type: ignore[operator]
    assert kind.parse_kind_version("garbage") is None
    assert "disableDefaultCNI" not in kind.render_config()
    cfg = kind.render_config("calico", workers=2)
    assert "disableDefaultCNI: true" in cfg and cfg.count("role: worker") == 2


def test_forbidden_names_user_verb_resource_and_the_check() -> None:
    body = (FIXTURES / "forbidden.json").read_text()
    msg = api_error(403, body, verb="list", resource="pods", namespace="gluu")
    assert msg.startswith("RBAC: system:serviceaccount:gluu:default cannot list pods in "
                          "namespace gluu (403 Forbidden)")
    assert "kubectl auth can-i list pods -n gluu" in msg
    # The cluster-scope form (yogeshlonkar/pod-dependency-init-container#1) and a group.
    scope = ('pods is forbidden: User "system:serviceaccount:x:default" cannot list resource '
             '"pods" in API group "" at the cluster scope')
    assert "cannot list pods (403" in api_error(403, {"message": scope}, verb="v", resource="r")
    netpol = ('networkpolicies.networking.k8s.io is forbidden: User "ci" cannot create resource '
              '"networkpolicies" in API group "networking.k8s.io" in the namespace "ztfl-a"')
    assert "kubectl auth can-i create networkpolicies.networking.k8s.io -n ztfl-a" in api_error(
        403, {"message": netpol}, verb="patch", resource="networkpolicies")
    # An older message format (triggermesh/tm#49): fall back to what was being done.
    old = ('pods "p" is forbidden: User "system:serviceaccount:sebgoa:default" cannot create '
           'pods/exec in the namespace "sebgoa"')
    assert "cannot create pods/exec in namespace sebgoa" in api_error(
        403, {"message": old}, verb="create", resource="pods/exec", namespace="sebgoa")


def test_other_api_errors_are_one_line() -> None:
    assert "401 Unauthorized" in api_error(401, b'{"message":"Unauthorized"}', verb="get",
                                           resource="pods")
    msg = api_error(409, {"message": 'object is being deleted: namespace "ztfl-x" is '
                                     "terminating"}, verb="patch", resource="namespaces",
                    name="ztfl-x")
    assert "still being deleted" in msg
    assert "422 Invalid" in api_error(422, "not json", verb="patch", resource="pods", name="p")


def test_short_cause_digs_out_the_socket_error() -> None:
    assert short_cause("Max retries exceeded (Caused by NewConnectionError(\"...: Failed to "
                       "establish a new connection: [Errno 111] Connection refused\"))"
                       ) == "Connection refused"
    assert short_cause("ConnectTimeoutError(..., 'Connection to 10.0.0.1 timed out.')") \
        == "timed out"


def test_cni_not_enforcing_is_reported_from_the_proofs() -> None:
    ok = Proof("rogue-to-server", "netpol", "blocked", True, "rogue -> fl-server:50051: timed out")
    bad = Proof("rogue-to-server", "netpol", "blocked", False,
                "rogue -> fl-server:50051: connected")
    assert cni_not_enforcing([ok], "kind") is None
    assert cni_not_enforcing([Proof("rogue-to-server", "netpol", "open", False, "x")],
                             "kube") is None
    msg = cni_not_enforcing([bad], "kind")
    assert msg is not None and "does not enforce NetworkPolicy" in msg and "v0.24" in msg
    assert "Calico or Cilium" in (cni_not_enforcing([bad], "kube") or "")


def test_netem_init_commands_shape_both_directions_inside_the_pod() -> None:
    cmds = commands(get_profile("NET2"))
    assert all("-n" not in c[:2] for c in cmds)
    assert cmds[0][:7] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "handle"]
    assert "delay" in cmds[0] and cmds[0][cmds[0].index("delay") + 1] == "25ms"
    assert ["ip", "link", "add", "ifb-ztfl", "type", "ifb"] in cmds
    assert any("mirred" in c for c in cmds)
    ifb_rate = [c for c in cmds if "ifb-ztfl" in c and "tbf" in c]
    assert ifb_rate and "50000kbit" in ifb_rate[0]  # NET2 down rate 50 Mbit/s
    assert commands(get_profile("NET0")) == []


def test_netem_init_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["NET1", "--dry-run"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"profile": "NET1", "dev": "eth0", "commands": 8,
                                "applied": False}
    assert main(["NET9", "--dry-run"]) == 2


def test_log_lines_and_exec_status() -> None:
    chunks = iter([b'{"event": "ro', b'und"}\nsecond\r\n', b"", b"tail"])
    assert list(split_lines(chunks)) == ['{"event": "round"}', "second", "tail"]
    assert exec_exit_code('{"metadata":{},"status":"Success"}') == 0
    # The error channel of a command that exited 3 (NonZeroExitCode Status).
    failure = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
               "message": "command terminated with non-zero exit code: error executing "
                          "command [sh -c exit 3], exit code 3",
               "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert exec_exit_code(json.dumps(failure)) == 3
    assert exec_exit_code("") == 0


@pytest.mark.privileged
def test_netem_init_in_a_real_namespace_applies_or_names_the_missing_module() -> None:
    """The init container's program against a veth in a throwaway namespace: on a kernel with
    netem it applies the profile; without (these CI machines) it exits 3 naming the fix."""
    import os
    import secrets
    import subprocess
    import sys

    from k8s_fixtures.netem.detect import probe_netem

    ns = f"ztfl-kt-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "p0"],
                    ["ip", "-n", ns, "link", "set", "eth0", "up"]):
            subprocess.run(cmd, check=True)
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m",
                            "k8s_fixtures.netem.init", "NET2"], capture_output=True, text=True,
                           timeout=60, env={**os.environ})
        has_netem, _ = probe_netem()
        if has_netem:
            assert r.returncode == 0, r.stderr
            shown = subprocess.run(["tc", "-n", ns, "qdisc", "show", "dev", "eth0"],
                                   capture_output=True, text=True).stdout
            assert "netem" in shown and "delay 25ms" in shown
        else:
            assert r.returncode == 3, r.stderr
            assert "modprobe sch_netem ifb" in r.stderr and "\n" not in r.stderr.strip()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_auto_takes_kind_only_when_docker_kind_and_the_image_are_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--ztfl-backend=auto`` on a machine with Docker and kind but without the workload image
    falls back to local, saying so (kind would fail at cluster creation otherwise). The
    machine's Docker is stood in for (``docker image inspect``'s answer)."""
    from pytest_ztfl import backends

    monkeypatch.setattr(kind, "available", lambda: (True, "docker daemon reachable, kind v0.27"))
    monkeypatch.setattr(kind, "_run", lambda argv, timeout=30: subprocess.CompletedProcess(
        argv, 1, "", "Error: No such image"))
    name, why = backends.choose("auto", None, "ztfl/workload:dev")
    assert name == "local"
    assert why.startswith("no kind: image ztfl/workload:dev is not in the local Docker engine")
    monkeypatch.setattr(kind, "_run", lambda argv, timeout=30: subprocess.CompletedProcess(
        argv, 0, "[]", ""))
    assert backends.choose("auto", None, "ztfl/workload:dev")[0] == "kind"
    assert backends.choose("kind", None, "x") == ("kind", "asked for")  # named: no probing
