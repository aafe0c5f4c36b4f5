"""Proofs of enforcement: probes that show each control of a security level is really on.

They run against a live FL namespace through the backend-neutral :class:`Cluster` API only
(``apply`` probe pods, ``exec`` probe programs, read server-side logs), so the same proofs run
on the local backend and on Kubernetes. Every proof is also run where its control is off, with
the opposite expectation (SEC0: the rogue pod *does* reach the server), which shows the probe
is able to see a hole.

* ``dns``               a client resolves ``fl-server`` (a policy that forgot DNS fails here)
* ``rogue-to-server``   a pod without the client label opens TCP to the server's gRPC port
* ``client-to-client``  a client opens TCP to another client-labelled pod

A "blocked" verdict needs positive controls taken at the same moment, or a probe that cannot
reach anything (a broken rogue) or a port nothing listens on would pass as a policy: the rogue
reaches a probe pod every policy admits (``ztfl-probe-open``), fl-client-0 reaches the server's
port, the peer's echo server answers on its own loopback. A failed control fails the proof,
naming it.
* ``no-cert-refused``   a TLS client without a certificate is refused; the reason is read from
                        the server side (gRPC's or the proxy's log), as the client only sees
                        UNAVAILABLE. Without mTLS (SEC0/SEC1) it runs expecting "accepted": a
                        plaintext client without a certificate is answered
* ``other-ca-refused``  a client with a certificate from another CA is refused, likewise
* ``wire``              (run during round 1, see :func:`judge_wire`) no plaintext model bytes
                        on the pod network, only TLS records; SEC0/SEC1: the bytes are seen

mTLS mode ``mesh`` (Linkerd) reads its mTLS verdicts from the server proxy instead:
:mod:`k8s_fixtures.proofs_mesh`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from k8s_fixtures.cluster import Cluster, ClusterError, Obj
from k8s_fixtures.tls import mesh
from k8s_fixtures.tls.ca import CertificateAuthority
from k8s_fixtures.tls.capture import CaptureVerdict
from k8s_fixtures.tls.grpc_log import grpc_handshake_failures
from k8s_fixtures.tls.reasons import NO_CLIENT_CERT, UNKNOWN_CA
from k8s_fixtures.tls.secret import to_secret
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER, PROXY_UID
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
        objs.append(_allow_all(plan.namespace, ROGUE_EGRESS, "rogue", "Egress"))
        # The rogue's positive control: a pod every policy lets it reach.
        objs.append(_allow_all(plan.namespace, OPEN_INGRESS, "probe-open", "Ingress"))
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


def _allow_all(namespace: str, name: str, role: str, direction: str) -> Obj:
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


def _server_refusals(cluster: Cluster, plan: ProofPlan) -> list[str]:
    if plan.tls == "sidecar":
        text = "\n".join(cluster.logs(plan.namespace, plan.server, container=PROXY_CONTAINER))
        return [f.reason for f in stunnel_handshake_failures(text)]
    text = "\n".join(cluster.logs(plan.namespace, plan.server, container=plan.server))
    return [f.reason for f in grpc_handshake_failures(text)]


# Errors of a connection attempt a policy causes: refused (reject), unanswered (drop), reset.
# Anything else (the probe did not run, DNS failed, no address) shows nothing about the policy.
BLOCKED_ERRORS = ("ConnectionRefusedError", "ConnectionResetError", "TimeoutError", "timed out",
                  "No route to host")


def _as_expected(r: dict[str, Any], blocked: bool) -> bool:
    """Did the probe show what the policy should do? ``open``: it connected. ``blocked``: the
    attempt itself failed the way a policy makes it fail (``tcp-call`` through a mesh proxy:
    the proxy closed it without an echo, which reports no error)."""
    if r.get("ok"):
        return not blocked
    error = str(r.get("error", ""))
    return blocked and (("reply" in r and not error) or any(e in error for e in BLOCKED_ERRORS))


def _reached(r: dict[str, Any]) -> str:
    return "connected" if r.get("ok") else str(r.get("error"))


Controls = list[tuple[str, dict[str, Any]]]


def _verdict(name: str, blocked: bool, r: dict[str, Any], what: str, controls: Controls) -> Proof:
    """The netpol proof ``name`` from the attempt ``r`` (described by ``what``) and, for a
    "blocked" verdict, its positive controls (label, result) taken around it: a control that
    failed fails the proof, named (the attempt's failure then shows nothing about a policy)."""
    expect = "blocked" if blocked else "open"
    if not blocked:
        return Proof(name, "netpol", expect, _as_expected(r, False), what)
    failed = [f"{label}: {_reached(c)}" for label, c in controls if not c.get("ok")]
    shown = "; ".join(f"{label}: {_reached(c)}" for label, c in controls)
    if failed:
        return Proof(
            name, "netpol", expect, False,
            f"no positive control ({'; '.join(failed)}), so the blocked attempt shows nothing "
            f"about a policy: {what}",
        )  # fmt: skip
    return Proof(name, "netpol", expect, _as_expected(r, True),
                 f"{what} (positive controls: {shown})")


def run_proofs(cluster: Cluster, plan: ProofPlan) -> list[Proof]:
    """Every pre-measurement proof for the plan's security level (probe pods must be ready)."""
    target = f"{plan.server}:{plan.port}"
    proofs: list[Proof] = []
    client_connect = ["connect", "--target", target, "--timeout", "3"]
    r = probe_exec(cluster, plan, "fl-client-0", ["connect", "--target", target], "fl-client")
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
    pods = {p.name: p for p in cluster.pods(plan.namespace)}
    open_target = f"{pods[OPEN].ip}:{plan.port}" if OPEN in pods else None
    controls: Controls = []
    if plan.netpol:
        if open_target is None:
            rogue_ok: dict[str, Any] = {"ok": False, "error": f"no {OPEN} pod"}
        else:
            rogue_ok = probe_exec(cluster, plan, ROGUE,
                                  ["connect", "--target", open_target, "--timeout", "3"])
        controls.append((f"rogue -> {OPEN} (admitted)", rogue_ok))
    r = probe_exec(cluster, plan, ROGUE, ["connect", "--target", target, "--timeout", "3"])
    if plan.netpol:  # right after the attempt: the port is open to a client now
        server_ok = probe_exec(cluster, plan, "fl-client-0", client_connect, "fl-client")
        controls.append((f"fl-client-0 -> {target}", server_ok))
    proofs.append(
        _verdict("rogue-to-server", plan.netpol, r, f"rogue -> {target}: {_reached(r)}", controls)
    )
    peer = f"{pods[PEER].ip}:{plan.port}"
    if plan.tls == "mesh":
        # fl-client-0's connect would reach its own proxy whatever the policy: send bytes and
        # expect them echoed, which only happens when the proxy could reach the peer.
        r = probe_exec(
            cluster,
            plan,
            "fl-client-0",
            ["tcp-call", "--target", peer, "--data", ECHO.hex(), "--timeout", "5"],
            "fl-client",
        )
        outcome = "echoed" if r["ok"] else (r.get("error") or "no echo (connection closed)")
    elif plan.tls == "sidecar":
        # The app's connects to the gRPC port go to its own proxy (the outbound redirect), which
        # accepts whatever the policy says; the proxy's uid is let through: connect as it.
        connect = ["connect", "--target", peer, "--timeout", "3"]
        client = next(p for p in cluster.pods(plan.namespace) if p.name == "fl-client-0")
        if any(c.name == PROXY_CONTAINER for c in client.containers):
            r = probe_exec(cluster, plan, "fl-client-0", [*connect, "--as-uid", str(PROXY_UID)],
                           PROXY_CONTAINER)
            how = "as the proxy's uid"
        else:  # no proxy (the mTLS proofs say so): nothing redirects the app's connect
            r = probe_exec(cluster, plan, "fl-client-0", connect, "fl-client")
            how = "from the app: no proxy container"
        outcome = f"{'connected' if r['ok'] else r.get('error')} ({how})"
    else:
        connect = ["connect", "--target", peer, "--timeout", "3"]
        r = probe_exec(cluster, plan, "fl-client-0", connect, "fl-client")
        outcome = "connected" if r["ok"] else str(r.get("error"))
    controls = []
    if plan.netpol:
        # the peer listens (its own loopback: no policy applies) and fl-client-0's network works
        local = ["connect", "--target", f"127.0.0.1:{plan.port}", "--timeout", "3"]
        controls.append((f"{PEER} listening", probe_exec(cluster, plan, PEER, local)))
        controls.append(
            (f"fl-client-0 -> {target}",
             probe_exec(cluster, plan, "fl-client-0", client_connect, "fl-client"))
        )  # fmt: skip
    what = f"fl-client-0 -> client-labelled {peer}: {outcome}"
    proofs.append(_verdict("client-to-client", plan.netpol, r, what, controls))
    if plan.tls == "none":
        return [*proofs, _certless_accepted(cluster, plan, target)]
    if plan.tls == "mesh":
        from k8s_fixtures.proofs_mesh import mesh_proofs

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
    # (proof, the server-side reason that shows the server's own check refused it, args)
    cases = [
        ("no-cert-refused", NO_CLIENT_CERT, ["--tls-ca", f"{PROBE_DIR}/ca.crt"]),
        (
            "other-ca-refused",
            UNKNOWN_CA,
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
    for name, reason, tls_args in cases:
        r = probe_exec(
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
        refused = not r["ok"] and r.get("code") == "UNAVAILABLE"
        reasons = _server_refusals(cluster, plan)
        deadline = time.monotonic() + REFUSAL_LOG_WAIT
        while refused and len(reasons) == before and time.monotonic() < deadline:
            # The client sees the reset before the server's line is written (and read back
            # through the pod's log): wait for it, bounded.
            time.sleep(0.1)
            reasons = _server_refusals(cluster, plan)
        new = reasons[before:]
        before = len(reasons)
        proofs.append(
            Proof(
                name,
                "mtls",
                "refused",
                # another reason (e.g. peer_alert: the probe refused the server) is not this
                # control's refusal
                refused and reason in new,
                f"client saw {r.get('code') or r.get('error')}; "
                f"server side: {', '.join(new) or 'no refusal logged'}",
            )
        )
    return proofs


# A plaintext call that reached the FL server's gRPC layer: the probe's method is not the
# server's, so "reached" is UNIMPLEMENTED (OK would do too).
REACHED = ("OK", "UNIMPLEMENTED")


def _certless_accepted(cluster: Cluster, plan: ProofPlan, target: str) -> Proof:
    """With mTLS off the refusal proof runs with the opposite expectation, as the netpol and
    wire proofs do: a client without a certificate (plaintext) is answered by the server at
    the gRPC level. It shows the probe able to see the hole the SEC2/SEC3 proof must not
    find."""
    r = probe_exec(cluster, plan, NOCERT,
                   ["grpc-call", "--target", target, "--timeout", "5"])  # fmt: skip
    code = str(r.get("code") or r.get("error"))
    reached = code in REACHED
    return Proof(
        "no-cert-refused", "mtls", "accepted", reached,
        f"plaintext client without a certificate: the server answered {code}"
        + ("" if reached else " (it was not reached: the probe cannot show a hole here)"),
    )  # fmt: skip


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
