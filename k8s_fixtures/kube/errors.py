"""One-line errors for the Kubernetes backends, each naming the cause and the fix.

* :func:`unreachable`      no API server answers at the context's address;
* :func:`api_error`        an API error status (403 RBAC names the verb/resource, 401, 404 ...);
* :func:`cni_not_enforcing` the proofs show NetworkPolicy is not enforced by the CNI;
* :data:`RBAC_RULES` / :func:`rbac_cluster_role` what the harness needs, as a ClusterRole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from k8s_fixtures.cluster import Obj

# (apiGroup, resources, verbs): everything the kube backend and the proofs call.
RBAC_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("", ("namespaces",), ("get", "list", "create", "patch", "delete")),
    ("", ("pods", "services", "serviceaccounts", "secrets", "configmaps"),
     ("get", "list", "watch", "create", "patch", "update", "delete")),
    ("", ("pods/log",), ("get",)),
    ("", ("pods/exec",), ("create", "get")),
    ("networking.k8s.io", ("networkpolicies",), ("get", "list", "create", "patch", "delete")),
    # mTLS mode mesh: Linkerd's policy objects (k8s_fixtures.tls.mesh); unused without Linkerd.
    ("policy.linkerd.io", ("servers", "meshtlsauthentications", "authorizationpolicies"),
     ("get", "list", "create", "patch", "delete")),
)
_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<ns>[^"]*)")?')


_CAUSES = (
    (re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)"), None),
    (re.compile(r"(CERTIFICATE_VERIFY_FAILED|certificate verify failed)[^'\")]*"), None),
    (re.compile(r"(timed out|Read timed out|ConnectTimeout)", re.I), "timed out"),
)


def short_cause(text: str) -> str:
    """The root cause inside a urllib3/requests error text (``Connection refused`` ...)."""
    for pattern, fixed in _CAUSES:
        m = pattern.search(text)
        if m:
            return fixed or m.group(1 if pattern.groups == 1 else 0).strip()
    lines = text.strip().splitlines()
    return lines[-1][:160] if lines else "no answer"


def unreachable(server: str, context: str | None, cause: str) -> str:
    ctx = f"context {context!r}" if context else "in-cluster config"
    return (f"no reachable cluster: {ctx} points at {server}, which does not answer "
            f"({short_cause(cause)}). Fix: start the cluster (kind: `kind create cluster "
            "--name ztfl`, or `docker start <name>-control-plane`), check `kubectl --context "
            f"{context or '<ctx>'} get --raw /version`, or pick another context with "
            "--ztfl-kube-context / KUBECONFIG")


def rbac_cluster_role(name: str = "pytest-ztfl") -> Obj:
    """A ClusterRole granting exactly :data:`RBAC_RULES` (namespaces are cluster-scoped)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [g], "resources": list(r), "verbs": list(v)}
                      for g, r, v in RBAC_RULES]}


def _status_body(body: Any) -> Mapping[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {"message": body.strip()}
    return body if isinstance(body, Mapping) else {}


def api_error(status: int, body: Any, *, verb: str, resource: str,
              namespace: str | None = None, name: str | None = None) -> str:
    """A one-line message for an API error ``status`` with its ``Status`` ``body``."""
    st = _status_body(body)
    message = str(st.get("message") or "").strip() or f"HTTP {status}"
    target = f"{resource} {namespace + '/' if namespace else ''}{name or ''}".strip()
    if status == 403 and "violates PodSecurity" in message:  # admission, not RBAC
        return f"{target}: refused by Pod Security admission (403 Forbidden): {message}"
    if status == 403:
        m = _FORBIDDEN.search(message)
        user = m.group("user") if m else "this user"
        verb = m.group("verb") if m else verb
        res = m.group("resource") if m else resource
        group = (m.group("group") if m else None) or ""
        ns = (m.group("ns") if m else None) or namespace
        scope = f" -n {ns}" if ns else ""
        qualified = f"{res}.{group}" if group else res
        return (f"RBAC: {user} cannot {verb} {qualified}{' in namespace ' + ns if ns else ''} "
                f"(403 Forbidden). Fix: grant it (check with `kubectl auth can-i {verb} "
                f"{qualified}{scope}`); the harness needs the ClusterRole in docs/kubernetes.md "
                "(rbac_cluster_role()) bound to this user")
    if status == 401:
        return (f"the API server rejected the credentials (401 Unauthorized) on {verb} "
                f"{target}: {message}. Fix: refresh the kubeconfig credentials (e.g. `aws eks "
                "update-kubeconfig`, `gcloud container clusters get-credentials`)")
    if status == 404 and name is None:
        return (f"the API server does not serve {resource} (404 on {verb}): {message}. "
                "Fix: use a cluster with that API enabled")
    if status == 409 and "terminat" in message.lower():
        return (f"{target}: {message} (a previous run's namespace is still being deleted). "
                "Fix: wait for it to go (kubectl get ns) or use another run id")
    if status == 422:
        return f"{target}: rejected by the API server (422 Invalid): {message}"
    return f"{verb} {target}: {status} {st.get('reason') or ''}: {message}".replace("  ", " ")


class ProofLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def control(self) -> str: ...
    @property
    def expect(self) -> str: ...
    @property
    def passed(self) -> bool: ...
    @property
    def detail(self) -> str: ...


def cni_not_enforcing(proofs: Iterable[ProofLike], backend: str) -> str | None:
    """If a NetworkPolicy proof that expected ``blocked`` failed, say so and name the fix."""
    bad = [p for p in proofs if p.control == "netpol" and p.expect == "blocked" and not p.passed]
    if not bad:
        return None
    what = "; ".join(f"{p.name}: {p.detail}" for p in bad)
    if backend == "kind":
        fix = ("use kind >= v0.24 (its default CNI kindnet enforces NetworkPolicy) and do not "
               "disable the default CNI, or use a kind cluster with Calico (docs/kubernetes.md)")
    else:
        fix = ("install or enable a NetworkPolicy-enforcing CNI: Calico or Cilium; EKS: enable "
               "network policy in the VPC CNI add-on; GKE: Dataplane V2 or "
               "--enable-network-policy; AKS: --network-policy azure|calico|cilium")
    return (f"this cluster's CNI does not enforce NetworkPolicy ({what}); SEC1/SEC3 results "
            f"would be meaningless. Fix: {fix}")
