"""Run the proofs of a live FL namespace (:func:`run_proofs`) and judge the wire capture
(:func:`judge_wire`)."""

from __future__ import annotations

import time
from typing import Any

from k8s_fixtures.cluster import Cluster, ClusterError
from k8s_fixtures.proofs.base import (
    ECHO,
    NOCERT,
    OPEN,
    PEER,
    PROBE_DIR,
    REFUSAL_LOG_WAIT,
    ROGUE,
    Controls,
    Proof,
    ProofPlan,
    probe_exec,
    reached,
    server_refusals,
    verdict,
)
from k8s_fixtures.proofs.hardening import hardening_proofs
from k8s_fixtures.proofs.mesh import mesh_proofs
from k8s_fixtures.tls.capture import CaptureVerdict
from k8s_fixtures.tls.reasons import NO_CLIENT_CERT, UNKNOWN_CA
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER, PROXY_UID


def run_proofs(cluster: Cluster, plan: ProofPlan) -> list[Proof]:
    """Every pre-measurement proof for the plan's security level (probe pods must be ready):
    NetworkPolicy and mTLS (:func:`control_proofs`), and where the level claims it, the
    workload's hardening (:func:`~k8s_fixtures.proofs.hardening.hardening_proofs`)."""
    proofs = control_proofs(cluster, plan)
    return proofs + hardening_proofs(cluster, plan) if plan.restricted else proofs


def control_proofs(cluster: Cluster, plan: ProofPlan) -> list[Proof]:
    """The DNS, NetworkPolicy and mTLS proofs (each also where its control is off)."""
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
        verdict("rogue-to-server", plan.netpol, r, f"rogue -> {target}: {reached(r)}", controls)
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
    proofs.append(verdict("client-to-client", plan.netpol, r, what, controls))
    if plan.tls == "none":
        return [*proofs, _certless_accepted(cluster, plan, target)]
    if plan.tls == "mesh":
        return proofs + mesh_proofs(cluster, plan)
    try:
        before = len(server_refusals(cluster, plan))
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
        reasons = server_refusals(cluster, plan)
        deadline = time.monotonic() + REFUSAL_LOG_WAIT
        while refused and len(reasons) == before and time.monotonic() < deadline:
            # The client sees the reset before the server's line is written (and read back
            # through the pod's log): wait for it, bounded.
            time.sleep(0.1)
            reasons = server_refusals(cluster, plan)
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
