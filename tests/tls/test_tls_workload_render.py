"""The FL workload's manifests take their mTLS details from the tls package (one definition each):
workload flags and the server's gRPC log environment (:mod:`k8s_fixtures.tls.native`), Secret
names and mount paths (:mod:`k8s_fixtures.tls.secret`), SPIFFE ids and the trust domain
(:mod:`k8s_fixtures.tls.ca`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from k8s_fixtures import workload
from k8s_fixtures.tls.ca import DEFAULT_TRUST_DOMAIN, CertificateAuthority
from k8s_fixtures.tls.native import server_args, server_env, tls_args
from k8s_fixtures.tls.secret import mount_secret, mounted_files, secret_name, to_secret

NS = "ztfl-wl"
FILES = mounted_files(Path(workload.TLS_DIR))


def _run(tls: workload.TLSMode, **kw: Any) -> workload.FLRun:
    return workload.FLRun(namespace=NS, run_id="wl", clients=2, server_flags=("--rounds", "1"),
                          tls=tls, **kw)


def _pods(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Pod"}


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]


def test_native_flags_env_and_secrets_come_from_the_tls_package() -> None:
    ca = CertificateAuthority.create()
    run = _run("native")
    objs = workload.render(run, ca)
    pods = _pods(objs)
    server = _container(pods[workload.SERVER])
    assert server["args"][-len(server_args(FILES, ["x"])):] == server_args(
        FILES, [run.spiffe_id(workload.CLIENT)])
    assert server["env"] == [{"name": k, "value": v}
                             for k, v in server_env(workload.BASE_ENV).items()]
    assert server["env"] == [{"name": "PYTHONUNBUFFERED", "value": "1"},
                             {"name": "GRPC_VERBOSITY", "value": "INFO"}]
    for i in range(run.clients):
        client = _container(pods[f"{workload.CLIENT}-{i}"])
        assert client["args"][-6:] == tls_args(FILES)
        assert client["env"] == [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    secrets = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    assert secrets == {secret_name(workload.SERVER), secret_name(workload.CLIENT)}
    mounted = {v["secret"]["secretName"] for p in pods.values() for v in p["spec"]["volumes"]
               if v["name"] == "tls"}
    assert mounted == secrets


def test_mounted_files_are_where_a_secret_mount_puts_them(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    secret = to_secret(ca.issue(ca.identity(NS, "sa")))
    assert mount_secret(secret, tmp_path) == mounted_files(tmp_path)
    assert [str(p) for p in (FILES.cert, FILES.key, FILES.ca)] == [
        f"{workload.TLS_DIR}/tls.crt", f"{workload.TLS_DIR}/tls.key", f"{workload.TLS_DIR}/ca.crt"]


def test_spiffe_ids_default_to_the_ca_trust_domain() -> None:
    run = _run("none")
    assert run.trust_domain == DEFAULT_TRUST_DOMAIN == "cluster.local"
    assert run.spiffe_id("fl-client") == f"spiffe://cluster.local/ns/{NS}/sa/fl-client"
    ca = CertificateAuthority.create()
    assert run.spiffe_id("fl-client") == ca.identity(NS, "fl-client").spiffe_id


@pytest.mark.parametrize("tls", ["native", "sidecar"])
def test_a_custom_trust_domain_reaches_certificates_and_allow_lists(
        tls: workload.TLSMode) -> None:
    ca = CertificateAuthority.create(trust_domain="example.org")
    run = _run(tls, trust_domain="example.org")
    client_id = f"spiffe://example.org/ns/{NS}/sa/fl-client"
    assert run.spiffe_id(workload.CLIENT) == client_id
    objs = workload.render(run, ca)
    annotated = {o["metadata"]["annotations"]["ztfl.io/spiffe-id"]
                 for o in objs if o["kind"] == "Secret"}
    assert client_id in annotated and all(a.startswith("spiffe://example.org/") for a in annotated)
    if tls == "native":
        assert _container(_pods(objs)[workload.SERVER])["args"][-2:] == ["--allowed-id",
                                                                        client_id]
    else:
        conf = next(o for o in objs if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"] == "fl-server-sidecar")["data"]["stunnel.conf"]
        assert "fl-client.ztfl-wl.serviceaccount.identity.example.org" in conf
        assert "cluster.local" not in conf


def test_a_ca_of_another_trust_domain_is_refused() -> None:
    ca = CertificateAuthority.create(trust_domain="example.org")
    msg = "CA trust domain 'example.org' is not the run's 'cluster.local'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        workload.render(_run("native"), ca)


def test_sidecar_pods_run_their_proxy_so_it_can_drop_to_the_uid_the_redirect_skips() -> None:
    """On Kubernetes the image's user is 10001: stunnel must start as root to drop to
    PROXY_UID (as non-root its setgroups fails and it exits); the nft/tc init containers stay
    non-root (the image's file capabilities put NET_ADMIN in effect) and so do the apps."""
    from k8s_fixtures.tls.sidecar import PROXY_CONTAINER, PROXY_UID

    run = _run("sidecar", netem_init=("ztfl-netem-init",), net_profile="NET2")
    objs = workload.render(run, CertificateAuthority.create())
    pods = _pods(objs)
    assert pods
    for pod in pods.values():
        spec = pod["spec"]
        names = [c["name"] for c in spec["containers"]]
        assert PROXY_CONTAINER in names, names
        proxy = next(c for c in spec["containers"] if c["name"] == PROXY_CONTAINER)
        assert proxy["securityContext"]["runAsUser"] == 0
        app = spec["containers"][0]
        assert "runAsUser" not in app.get("securityContext", {})
        for init in spec.get("initContainers", []):
            sc = init["securityContext"]
            assert "runAsUser" not in sc and sc["capabilities"]["add"] == ["NET_ADMIN"], init
    confs = [o["data"] for o in objs if o["kind"] == "ConfigMap" and "stunnel.conf" in o["data"]]
    assert len(confs) >= 2  # the server's (inbound) and the clients' (outbound)
    assert all(f"setuid = {PROXY_UID}" in c["stunnel.conf"] for c in confs)
    assert any(f"meta skuid {PROXY_UID} return" in c["redirect.nft"] for c in confs)
    ns = next(o for o in objs if o["kind"] == "Namespace")
    assert ns["metadata"]["labels"][workload.PSA_ENFORCE] == "privileged"
    plain = next(o for o in workload.render(_run("none")) if o["kind"] == "Namespace")
    assert workload.PSA_ENFORCE not in plain["metadata"]["labels"]
    inits = [i["name"] for p in pods.values() for i in p["spec"].get("initContainers", [])]
    assert "ztfl-netem-init" in inits and f"{PROXY_CONTAINER}-init" in inits, inits
