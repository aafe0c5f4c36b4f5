"""Proofs of enforcement: probes that show each control of a security level is really on.

They run against a live FL namespace through the backend-neutral :class:`Cluster` API only
(``apply`` probe pods, ``exec`` probe programs, read server-side logs), so the same proofs run
on the local backend and on Kubernetes. Every proof is also run where its control is off, with
the opposite expectation (SEC0: the rogue pod *does* reach the server), which shows the probe
is able to see a hole.

* ``dns``               a client resolves ``fl-server`` (a policy that forgot DNS fails here)
* ``rogue-to-server``   a pod without the client label opens TCP to the server's gRPC port
* ``client-to-client``  a client opens TCP to another client-labelled pod
* ``no-cert-refused``   a TLS client without a certificate is refused; the reason is read from
                        the server side (gRPC's or the proxy's log), as the client only sees
                        UNAVAILABLE
* ``other-ca-refused``  a client with a certificate from another CA is refused, likewise
* ``wire``              (run during round 1, see :func:`judge_wire`) no plaintext model bytes
                        on the pod network, only TLS records; SEC0/SEC1: the bytes are seen

mTLS mode ``mesh`` (Linkerd) keeps ``dns`` and ``rogue-to-server`` (the rogue is an un-meshed
pod), runs ``client-to-client`` from the meshed fl-client-0 as an echo through its proxy (a
meshed client's ``connect`` always succeeds: it reaches its own proxy), and reads every mTLS
verdict from the server proxy's counters (:mod:`.tls.linkerd_metrics`, fetched from
``127.0.0.1:4191/metrics`` inside the server pod):

* ``identity-accepted`` fl-client-0 (ServiceAccount ``fl-client``) calls the server through its
                        proxy: the FL app answers (``UNIMPLEMENTED`` for the probe's method) and
                        the server proxy counts an *allow* for the client's mesh identity
* ``no-cert-refused``   an un-meshed client-labelled pod (``linkerd.io/inject: disabled``, so
                        no certificate) calls the server: refused (``PERMISSION_DENIED``, the
                        proxy's HTTP 403, or ``UNAVAILABLE``) and counted as a *deny* without
                        identity
* ``identity-refused``  a meshed pod with a ServiceAccount not on the allow-list
                        (``MeshTLSAuthentication``) calls the server: refused, counted as a *deny*
                        for its (authenticated) identity
* ``mesh-mtls``         (after round 1, :func:`judge_mesh_round`) every request the server proxy
                        admitted on the gRPC port came over mTLS from the client identity
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from k8s_fixtures.cluster import Cluster, ClusterError, Obj
from k8s_fixtures.tls import linkerd_metrics as lm
from k8s_fixtures.tls import mesh
from k8s_fixtures.tls.ca import CertificateAuthority
from k8s_fixtures.tls.capture import CaptureVerdict
from k8s_fixtures.tls.grpc_log import grpc_handshake_failures
from k8s_fixtures.tls.secret import to_secret
from k8s_fixtures.tls.stunnel_log import stunnel_handshake_failures

PROBE_DIR = "/var/run/ztfl/probe-tls"
ROGUE, PEER, NOCERT = "ztfl-probe-rogue", "ztfl-probe-peer", "ztfl-probe-nocert"
IDENTITY, IDENTITY_SA = "ztfl-probe-identity", "ztfl-probe-other"  # mesh: a meshed stranger
CLIENT_SA = "fl-client"
ECHO = b"ztfl-client-to-client"
MESH_REFUSED = ("PERMISSION_DENIED", "UNAVAILABLE")  # the proxy's HTTP 403, or a reset
METRICS_SCRIPT = (
    "import sys, urllib.request\n"
    f"url = 'http://127.0.0.1:{mesh.ADMIN_PORT}/metrics'\n"
    "sys.stdout.write(urllib.request.urlopen(url, timeout=5).read().decode())\n"
)


@dataclass(frozen=True)
class Proof:
    name: str
    control: str  # "netpol" | "mtls" | "dns"
    # "blocked" | "open" | "refused" | "accepted" | "resolves" | "tls-only" | "plaintext"
    expect: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProofPlan:
    namespace: str
    python: tuple[str, ...]
    image: str
    netpol: bool
    tls: str  # "none" | "native" | "sidecar" | "mesh"
    server: str = "fl-server"
    port: int = 50051


def probe_pods(
    plan: ProofPlan, ca: CertificateAuthority | None, other_ca: CertificateAuthority | None
) -> list[Obj]:
    """The probe pods (and their Secret) to apply next to the FL pods.

    The mTLS probe trusts the harness CA (so it verifies the server and reaches the server's
    client-certificate check) but holds a leaf from ``other_ca``: presenting no certificate, or
    that one, must be refused by the server, and the server logs why. In ``mesh`` mode no CA is
    used: the probe pods stay out of the mesh (``linkerd.io/inject: disabled``), except one
    meshed pod with a ServiceAccount of its own (not on the allow-list).
    """
    sleep = [*plan.python, "-c", "import time\nwhile True: time.sleep(3600)"]
    meshed = plan.tls == "mesh"

    def pod(
        name: str,
        labels: dict[str, str],
        command: list[str],
        volumes: list[dict[str, Any]] | None = None,
        inject: bool = False,
        service_account: str | None = None,
    ) -> Obj:
        c: dict[str, Any] = {"name": "probe", "image": plan.image, "command": command}
        spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [c]}
        if service_account:
            spec["serviceAccountName"] = service_account
        if volumes:
            spec["volumes"] = volumes
            c["volumeMounts"] = [{"name": "tls", "mountPath": PROBE_DIR, "readOnly": True}]
        meta: dict[str, Any] = {
            "name": name,
            "namespace": plan.namespace,
            "labels": {"app.kubernetes.io/part-of": "pytest-ztfl", **labels},
        }
        if meshed:
            meta["annotations"] = dict(mesh.INJECT_ENABLED if inject else mesh.INJECT_DISABLED)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    client = {"app.kubernetes.io/component": "fl-client", "ztfl.io/fl-role": "probe"}
    objs = [
        pod(ROGUE, {"ztfl.io/fl-role": "rogue"}, sleep),
        pod(
            PEER,
            client,
            [*plan.python, "-m", "k8s_fixtures.tls.probe", "echo-server", "--port", str(plan.port)],
        ),
    ]
    if meshed:
        account: Obj = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": IDENTITY_SA,
                "namespace": plan.namespace,
                "labels": {"app.kubernetes.io/part-of": "pytest-ztfl"},
            },
        }
        objs += [
            account,
            pod(NOCERT, client, sleep),
            pod(IDENTITY, client, sleep, inject=True, service_account=IDENTITY_SA),
        ]
    elif plan.tls != "none":
        assert ca is not None and other_ca is not None
        issued = other_ca.issue(other_ca.identity(plan.namespace, "fl-client"))
        secret = to_secret(replace(issued, ca_pem=ca.cert_pem), name="ztfl-probe-other-ca")
        objs.append(secret)
        objs.append(
            pod(
                NOCERT,
                client,
                sleep,
                [{"name": "tls", "secret": {"secretName": "ztfl-probe-other-ca"}}],
            )
        )
    return objs


def _probe(
    cluster: Cluster, plan: ProofPlan, pod: str, args: Sequence[str], container: str | None = None
) -> dict[str, Any]:
    rc, out, err = cluster.exec(
        plan.namespace,
        pod,
        [*plan.python, "-m", "k8s_fixtures.tls.probe", *args],
        container=container,
    )
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": f"probe printed nothing (rc {rc}): {err.strip()[-300:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _server_refusals(cluster: Cluster, plan: ProofPlan) -> list[str]:
    if plan.tls == "sidecar":
        text = "\n".join(cluster.logs(plan.namespace, plan.server, container="ztfl-proxy"))
        return [f.reason for f in stunnel_handshake_failures(text)]
    text = "\n".join(cluster.logs(plan.namespace, plan.server, container=plan.server))
    return [f.reason for f in grpc_handshake_failures(text)]


def run_proofs(cluster: Cluster, plan: ProofPlan) -> list[Proof]:
    """Every pre-measurement proof for the plan's security level (probe pods must be ready)."""
    target = f"{plan.server}:{plan.port}"
    proofs: list[Proof] = []
    r = _probe(cluster, plan, "fl-client-0", ["connect", "--target", target], "fl-client")
    proofs.append(
        Proof(
            "dns",
            "dns",
            "resolves",
            bool(r["ok"]),
            "fl-client-0 resolved fl-server and connected"
            if r["ok"]
            else f"fl-client-0 -> {target}: {r.get('error')}",
        )
    )
    expect = "blocked" if plan.netpol else "open"
    r = _probe(cluster, plan, ROGUE, ["connect", "--target", target, "--timeout", "3"])
    proofs.append(
        Proof(
            "rogue-to-server",
            "netpol",
            expect,
            bool(r["ok"]) != plan.netpol,
            f"rogue -> {target}: {'connected' if r['ok'] else r.get('error')}",
        )
    )
    peer_ip = next(p.ip for p in cluster.pods(plan.namespace) if p.name == PEER)
    peer = f"{peer_ip}:{plan.port}"
    if plan.tls == "mesh":
        # fl-client-0's connect would reach its own proxy whatever the policy: send bytes and
        # expect them echoed, which only happens when the proxy could reach the peer.
        r = _probe(
            cluster,
            plan,
            "fl-client-0",
            ["tcp-call", "--target", peer, "--data", ECHO.hex(), "--timeout", "5"],
            "fl-client",
        )
        outcome = "echoed" if r["ok"] else (r.get("error") or "no echo (connection closed)")
    else:
        connect = ["connect", "--target", peer, "--timeout", "3"]
        r = _probe(cluster, plan, "fl-client-0", connect, "fl-client")
        outcome = "connected" if r["ok"] else str(r.get("error"))
    proofs.append(
        Proof(
            "client-to-client",
            "netpol",
            expect,
            bool(r["ok"]) != plan.netpol,
            f"fl-client-0 -> client-labelled {peer}: {outcome}",
        )
    )
    if plan.tls == "none":
        return proofs
    if plan.tls == "mesh":
        return proofs + mesh_proofs(cluster, plan)
    try:
        before = len(_server_refusals(cluster, plan))
    except ClusterError as exc:
        # No server-side log to read a refusal from (e.g. sidecar mode expected but the server
        # pod has no proxy container): no refusal can be shown, so both proofs fail, saying why.
        return proofs + [
            Proof(name, "mtls", "refused", False, f"server side unreadable: {exc}")
            for name in ("no-cert-refused", "other-ca-refused")
        ]
    cases = [
        ("no-cert-refused", ["--tls-ca", f"{PROBE_DIR}/ca.crt"]),
        (
            "other-ca-refused",
            [
                "--tls-ca",
                f"{PROBE_DIR}/ca.crt",
                "--tls-cert",
                f"{PROBE_DIR}/tls.crt",
                "--tls-key",
                f"{PROBE_DIR}/tls.key",
            ],
        ),
    ]
    for name, tls_args in cases:
        r = _probe(
            cluster,
            plan,
            NOCERT,
            [
                "grpc-call",
                "--target",
                target,
                "--timeout",
                "5",
                "--server-name",
                plan.server,
                *tls_args,
            ],
        )
        reasons = _server_refusals(cluster, plan)
        new = reasons[before:]
        before = len(reasons)
        refused = not r["ok"] and r.get("code") == "UNAVAILABLE"
        proofs.append(
            Proof(
                name,
                "mtls",
                "refused",
                refused and bool(new),
                f"client saw {r.get('code') or r.get('error')}; "
                f"server side: {', '.join(new) or 'no refusal logged'}",
            )
        )
    return proofs


def proxy_metrics(cluster: Cluster, plan: ProofPlan) -> str:
    """The server proxy's Prometheus text, fetched inside the server pod over loopback (no
    NetworkPolicy applies, and Linkerd's default policy authorizes localhost on its admin
    port). Raises :class:`ClusterError` when it cannot be read."""
    res = cluster.exec(
        plan.namespace, plan.server, [*plan.python, "-c", METRICS_SCRIPT], container=plan.server
    )
    if res.rc != 0:
        raise ClusterError(
            f"{plan.server}: 127.0.0.1:{mesh.ADMIN_PORT}/metrics unreadable (rc {res.rc}): "
            f"{(res.err or res.out).strip()[-300:]}"
        )
    return res.out


def _not_meshed(cluster: Cluster, plan: ProofPlan) -> str | None:
    """Why the mesh is missing (a pod Linkerd should have injected has no proxy), or None."""
    for name in (plan.server, IDENTITY):
        st = cluster.pod_status(plan.namespace, name)
        # the proxy is an init container when Linkerd injects native sidecars
        containers = {c.name for c in (*st.containers, *st.init_containers)}
        if mesh.PROXY_CONTAINER not in containers:
            return (
                f"pod {name} has no {mesh.PROXY_CONTAINER} container: Linkerd's proxy injector "
                "did not run (install Linkerd first: docs/kubernetes.md, Mesh mode)"
            )
    return None


def _peer_is(peer: str, namespace: str, service_account: str | None) -> bool:
    """``peer`` (see :func:`.tls.linkerd_metrics.peer_of`) is that ServiceAccount's mesh
    identity, or, for ``None``, a client without any identity."""
    if service_account is None:
        return peer.startswith("<")
    return peer.startswith(mesh.identity_prefix(namespace, service_account))


def mesh_proofs(cluster: Cluster, plan: ProofPlan, settle: float = 60.0) -> list[Proof]:
    """The mesh-mode mTLS proofs (module docstring): each call's outcome on the client side,
    and the server proxy's new allow/deny counters for the caller (read before and after)."""
    cases = [  # name, pod, container, expected verdict, caller's ServiceAccount (None: none)
        ("identity-accepted", "fl-client-0", "fl-client", "allow", CLIENT_SA),
        ("no-cert-refused", NOCERT, None, "deny", None),
        ("identity-refused", IDENTITY, None, "deny", IDENTITY_SA),
    ]

    def expect(verdict: str) -> str:
        return "accepted" if verdict == "allow" else "refused"

    try:
        missing = _not_meshed(cluster, plan)
        before = proxy_metrics(cluster, plan) if missing is None else ""
    except ClusterError as exc:
        missing = f"server proxy unreadable: {exc}"
    if missing is not None:
        return [Proof(name, "mtls", expect(v), False, missing) for name, _, _, v, _ in cases]
    call = ["grpc-call", "--target", f"{plan.server}:{plan.port}", "--timeout", "5"]
    proofs = []
    for name, pod, container, verdict, account in cases:
        deadline = time.monotonic() + settle
        r = _probe(cluster, plan, pod, call, container)
        # Only for the accepted call: the server's proxy may be up before the app listens.
        while (
            verdict == "allow" and r.get("code") == "UNAVAILABLE" and (time.monotonic() < deadline)
        ):
            time.sleep(1.0)
            r = _probe(cluster, plan, pod, call, container)
        try:
            after = proxy_metrics(cluster, plan)
        except ClusterError as exc:
            proofs.append(Proof(name, "mtls", expect(verdict), False, str(exc)))
            continue
        new = lm.new_decisions(before, after, plan.port)
        before = after
        seen = any(v == verdict and _peer_is(p, plan.namespace, account) for v, p in new)
        if verdict == "allow":
            client_ok = r.get("code") == "UNIMPLEMENTED"  # the FL app answered
        else:
            client_ok = not r["ok"] and r.get("code") in MESH_REFUSED
        proofs.append(
            Proof(
                name,
                "mtls",
                expect(verdict),
                client_ok and seen,
                f"{pod} saw {r.get('code') or r.get('error')}; server proxy allowed "
                f"{lm.describe(new, 'allow')}, denied {lm.describe(new, 'deny')}",
            )
        )
    return proofs


def judge_mesh_round(text: str, namespace: str, port: int) -> tuple[Proof, list[str]]:
    """``mesh-mtls`` from the server proxy's counters during the run: something was admitted
    on ``port`` and only over mTLS from the client ServiceAccount. Also returns the admitted
    identities (for the row)."""
    counts = lm.tally(lm.authz_decisions(text, port))
    admitted = sorted({p for (v, p), n in counts.items() if v == "allow" and n > 0})
    strangers = [p for p in admitted if not _peer_is(p, namespace, CLIENT_SA)]
    detail = (
        f"server proxy on :{port}: allowed {lm.describe(counts, 'allow')}; "
        f"denied {lm.describe(counts, 'deny')}"
    )
    if strangers:
        detail += f"; admitted without the {CLIENT_SA} identity: {', '.join(strangers)}"
    passed = bool(admitted) and not strangers
    return Proof("mesh-mtls", "mtls", "tls-only", passed, detail), admitted


def mesh_round(cluster: Cluster, plan: ProofPlan) -> tuple[Proof, list[str]]:
    """:func:`judge_mesh_round` on a fresh read of the server proxy's metrics (the server
    container must still run: call it during the rounds)."""
    try:
        text = proxy_metrics(cluster, plan)
    except ClusterError as exc:
        return Proof("mesh-mtls", "mtls", "tls-only", False, str(exc)), []
    return judge_mesh_round(text, plan.namespace, plan.port)


def judge_wire(verdict: CaptureVerdict, tls: bool, min_bytes: int) -> Proof:
    """The wire proof from a capture of round 1 (``min_bytes``: at least one model update)."""
    enough = verdict.tcp_payload_bytes >= min_bytes
    detail = (
        f"{verdict.tcp_payload_bytes} TCP payload bytes in {verdict.packets} packets, "
        f"{len(verdict.flows)} flows, model bytes {'seen' if verdict.pattern_seen else 'not seen'}"
        f" in clear, {'all' if verdict.all_tls else 'not all'} flows TLS"
    )
    if not enough:
        return Proof(
            "wire",
            "mtls",
            "tls-only" if tls else "plaintext",
            False,
            f"capture too small to judge (< {min_bytes} bytes): {detail}",
        )
    if tls:
        return Proof(
            "wire", "mtls", "tls-only", verdict.all_tls and not verdict.pattern_seen, detail
        )
    return Proof("wire", "mtls", "plaintext", verdict.pattern_seen, detail)
