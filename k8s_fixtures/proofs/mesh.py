"""Proofs of enforcement for mTLS mode ``mesh`` (Linkerd), read from the server's proxy.

``dns`` and ``rogue-to-server`` stay as in :mod:`k8s_fixtures.proofs` (the rogue is an
un-meshed pod); ``client-to-client`` runs from the meshed fl-client-0 as an echo through its
proxy (a meshed client's ``connect`` always succeeds: it reaches its own proxy). Every mTLS
verdict comes from the server proxy's counters (:mod:`.tls.linkerd_metrics`, fetched from
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

import time

from k8s_fixtures.cluster import Cluster, ClusterError
from k8s_fixtures.proofs.base import (
    CLIENT_SA,
    IDENTITY,
    IDENTITY_SA,
    NOCERT,
    Proof,
    ProofPlan,
    probe_exec,
)
from k8s_fixtures.tls import linkerd_metrics as lm
from k8s_fixtures.tls import mesh

MESH_REFUSED = ("PERMISSION_DENIED", "UNAVAILABLE")  # the proxy's HTTP 403, or a reset
METRICS_SCRIPT = (
    "import sys, urllib.request\n"
    f"url = 'http://127.0.0.1:{mesh.ADMIN_PORT}/metrics'\n"
    "sys.stdout.write(urllib.request.urlopen(url, timeout=5).read().decode())\n"
)


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
        r = probe_exec(cluster, plan, pod, call, container)
        # Only for the accepted call: the server's proxy may be up before the app listens.
        while (
            verdict == "allow" and r.get("code") == "UNAVAILABLE" and (time.monotonic() < deadline)
        ):
            time.sleep(1.0)
            r = probe_exec(cluster, plan, pod, call, container)
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
