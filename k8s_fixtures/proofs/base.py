"""What every proof is made of: the verdict (:class:`Proof`), what a cell claims
(:class:`ProofPlan`), the probe pods and policies, running a probe program in a pod, reading the
server's refusals, and judging a "blocked" probe against its positive controls."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from k8s_fixtures import hardening
from k8s_fixtures.cluster import Cluster, Obj
from k8s_fixtures.tls import mesh
from k8s_fixtures.tls.ca import CertificateAuthority
from k8s_fixtures.tls.grpc_log import grpc_handshake_failures
from k8s_fixtures.tls.secret import to_secret
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER
from k8s_fixtures.tls.stunnel_log import stunnel_handshake_failures

PROBE_DIR = "/var/run/ztfl/probe-tls"
ROGUE, PEER, NOCERT = "ztfl-probe-rogue", "ztfl-probe-peer", "ztfl-probe-nocert"
OPEN, OPEN_INGRESS = "ztfl-probe-open", "ztfl-probe-open-ingress"  # admitted from everywhere
ROGUE_EGRESS = "ztfl-probe-rogue-egress"  # NetworkPolicy: the rogue's egress is unrestricted
IDENTITY, IDENTITY_SA = "ztfl-probe-identity", "ztfl-probe-other"  # mesh: a meshed stranger
CLIENT_SA = "fl-client"
REFUSAL_LOG_WAIT = 5.0  # s for the server's refusal line after the client saw the refusal
ECHO = b"ztfl-client-to-client"


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
    restricted: bool = False  # SEC3's hardening (RBAC, Pod Security): proofs.hardening
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
        if plan.restricted:  # the namespace admits no other pods
            hardening.harden_pod(spec)
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
    objs.append(
        pod(
            OPEN,
            {"ztfl.io/fl-role": "probe-open"},
            [*plan.python, "-m", "k8s_fixtures.tls.probe", "echo-server", "--port", str(plan.port)],
        )
    )
    # ready = listening: a refused connection to the peer must mean the policy, not start-up
    for listener in objs[1:]:
        listener["spec"]["containers"][0]["readinessProbe"] = {
            "tcpSocket": {"port": plan.port},
            "periodSeconds": 1,
        }
    if plan.netpol:
        # The default deny also denies the rogue's own egress: without this, rogue-to-server
        # would pass even with a server ingress rule that admits everyone. With it, only the
        # server's ingress rules stand between the rogue (an attacker whose egress nobody
        # restricts, e.g. from another namespace) and the server.
        objs.append(allow_all(plan.namespace, ROGUE_EGRESS, "rogue", "Egress"))
        # The rogue's positive control: a pod every policy lets it reach.
        objs.append(allow_all(plan.namespace, OPEN_INGRESS, "probe-open", "Ingress"))
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
    else:  # no TLS: the certless client shows the proof can see a server that lets it in
        objs.append(pod(NOCERT, client, sleep))
    return objs


def allow_all(namespace: str, name: str, role: str, direction: str) -> Obj:
    """A NetworkPolicy that opens one direction of the pods with ``ztfl.io/fl-role: role``."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {"ztfl.io/fl-role": role}},
            "policyTypes": [direction],
            direction.lower(): [{}],
        },
    }


def probe_exec(
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


def server_refusals(cluster: Cluster, plan: ProofPlan) -> list[str]:
    if plan.tls == "sidecar":
        text = "\n".join(cluster.logs(plan.namespace, plan.server, container=PROXY_CONTAINER))
        return [f.reason for f in stunnel_handshake_failures(text)]
    text = "\n".join(cluster.logs(plan.namespace, plan.server, container=plan.server))
    return [f.reason for f in grpc_handshake_failures(text)]


# Errors of a connection attempt a policy causes: refused (reject), unanswered (drop), reset.
# Anything else (the probe did not run, DNS failed, no address) shows nothing about the policy.
BLOCKED_ERRORS = ("ConnectionRefusedError", "ConnectionResetError", "TimeoutError", "timed out",
                  "No route to host")


def as_expected(r: dict[str, Any], blocked: bool) -> bool:
    """Did the probe show what the policy should do? ``open``: it connected. ``blocked``: the
    attempt itself failed the way a policy makes it fail (``tcp-call`` through a mesh proxy:
    the proxy closed it without an echo, which reports no error)."""
    if r.get("ok"):
        return not blocked
    error = str(r.get("error", ""))
    return blocked and (("reply" in r and not error) or any(e in error for e in BLOCKED_ERRORS))


def reached(r: dict[str, Any]) -> str:
    return "connected" if r.get("ok") else str(r.get("error"))


Controls = list[tuple[str, dict[str, Any]]]


def verdict(name: str, blocked: bool, r: dict[str, Any], what: str, controls: Controls) -> Proof:
    """The netpol proof ``name`` from the attempt ``r`` (described by ``what``) and, for a
    "blocked" verdict, its positive controls (label, result) taken around it: a control that
    failed fails the proof, named (the attempt's failure then shows nothing about a policy)."""
    expect = "blocked" if blocked else "open"
    if not blocked:
        return Proof(name, "netpol", expect, as_expected(r, False), what)
    failed = [f"{label}: {reached(c)}" for label, c in controls if not c.get("ok")]
    shown = "; ".join(f"{label}: {reached(c)}" for label, c in controls)
    if failed:
        return Proof(
            name, "netpol", expect, False,
            f"no positive control ({'; '.join(failed)}), so the blocked attempt shows nothing "
            f"about a policy: {what}",
        )  # fmt: skip
    return Proof(name, "netpol", expect, as_expected(r, True),
                 f"{what} (positive controls: {shown})")
