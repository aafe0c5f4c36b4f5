"""mTLS ``mesh`` mode: the Linkerd objects of an FL run (Kubernetes backends with Linkerd only).

Linkerd does what the harness does itself in the other modes: its proxy-injector adds an init
container (iptables redirect) and a ``linkerd-proxy`` container to every pod annotated
``linkerd.io/inject: enabled``, its identity service issues each proxy a leaf for the pod's
ServiceAccount, and its policy controller enforces ``policy.linkerd.io`` objects in the server's
proxy. The app containers stay plaintext. This module renders what the harness must add:

* annotations: :func:`namespace_annotations` (injection and ``all-authenticated`` as the
  namespace's default inbound policy), :data:`INJECT_ENABLED` / :data:`INJECT_DISABLED` for pods
  (probe pods playing an un-meshed client are never injected);
* the allow-list (:func:`policy_objects`): a ``Server`` on the server pods' ``grpc`` port
  (``accessPolicy: deny``), a ``MeshTLSAuthentication`` naming the client ServiceAccount, and an
  ``AuthorizationPolicy`` binding them: the mesh equivalent of ``--allowed-id`` / ``checkHost``;
* with SEC1/SEC3, the NetworkPolicies Linkerd needs besides the FL set
  (:func:`network_policies`): meshed traffic arrives on the proxy's inbound port 4143, not on the
  app port ("Communication between two meshed pods will always have its original target port
  replaced with the proxy's inbound port", linkerd.io/2/common-errors/network-policy), and
  proxies must reach the control plane (identity 8080, destination 8086, policy 8090 in
  namespace ``linkerd``) or they never become ready.

Kubelet probes need no rule: traffic from a pod's own node is always allowed by NetworkPolicy
(as in :mod:`k8s_fixtures.netpol.evaluator`), and Linkerd authorizes probes by default. Object
versions follow the CRDs of linkerd/linkerd2 ``charts/linkerd-crds/templates/policy/``
(``Server`` v1beta3 is the storage version; the others are v1alpha1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INJECT = "linkerd.io/inject"
INJECT_ENABLED = {INJECT: "enabled"}
INJECT_DISABLED = {INJECT: "disabled"}
DEFAULT_INBOUND_POLICY = "config.linkerd.io/default-inbound-policy"
PROXY_CONTAINER = "linkerd-proxy"
INBOUND_PORT = 4143  # linkerd-proxy inbound (meshed traffic arrives here)
ADMIN_PORT = 4191  # linkerd-proxy admin: /metrics, /ready, /live
CONTROL_PLANE_NAMESPACE = "linkerd"
CONTROL_PLANE_PORTS = (8080, 8086, 8090)  # identity, destination, policy
POLICY_GROUP = "policy.linkerd.io"
SERVER_VERSION = f"{POLICY_GROUP}/v1beta3"
AUTHN_VERSION = f"{POLICY_GROUP}/v1alpha1"
AUTHZ_VERSION = f"{POLICY_GROUP}/v1alpha1"
COMPONENT = "app.kubernetes.io/component"
NAMESPACE_NAME = "kubernetes.io/metadata.name"
NETPOL_LABELS = {"app.kubernetes.io/part-of": "pytest-ztfl"}


def identity_prefix(namespace: str, service_account: str) -> str:
    """The start of a ServiceAccount's Linkerd identity,
    ``<sa>.<ns>.serviceaccount.identity.`` (then ``<linkerd ns>.<trust domain>``, by default
    ``linkerd.cluster.local``): what the server proxy reports as ``client_id``."""
    return f"{service_account}.{namespace}.serviceaccount.identity."


def identity(namespace: str, service_account: str, control_plane: str = CONTROL_PLANE_NAMESPACE,
             trust_domain: str = "cluster.local") -> str:
    """A ServiceAccount's full Linkerd identity (the name in its proxy's certificate)."""
    return f"{identity_prefix(namespace, service_account)}{control_plane}.{trust_domain}"


def namespace_annotations() -> dict[str, str]:
    """The run namespace's annotations: inject every pod not opting out, and admit only meshed
    (authenticated) clients on ports no ``Server`` describes."""
    return {**INJECT_ENABLED, DEFAULT_INBOUND_POLICY: "all-authenticated"}


def policy_objects(namespace: str, labels: Mapping[str, str], server: str, port: str,
                   clients: tuple[str, ...]) -> list[dict[str, Any]]:
    """``Server`` (pods with component ``server``, container port ``port``, gRPC) +
    ``MeshTLSAuthentication`` (the ServiceAccounts ``clients``) + ``AuthorizationPolicy``."""

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": namespace, "labels": dict(labels)}

    srv, authn, authz = f"{server}-grpc", f"{server}-clients", f"{server}-grpc-clients"
    return [
        {
            "apiVersion": SERVER_VERSION,
            "kind": "Server",
            "metadata": meta(srv),
            "spec": {
                "podSelector": {"matchLabels": {COMPONENT: server}},
                "port": port,
                "proxyProtocol": "gRPC",
                "accessPolicy": "deny",
            },
        },
        {
            "apiVersion": AUTHN_VERSION,
            "kind": "MeshTLSAuthentication",
            "metadata": meta(authn),
            "spec": {"identityRefs": [{"kind": "ServiceAccount", "name": sa} for sa in clients]},
        },
        {
            "apiVersion": AUTHZ_VERSION,
            "kind": "AuthorizationPolicy",
            "metadata": meta(authz),
            "spec": {
                "targetRef": {"group": POLICY_GROUP, "kind": "Server", "name": srv},
                "requiredAuthenticationRefs": [
                    {"group": POLICY_GROUP, "kind": "MeshTLSAuthentication", "name": authn}
                ],
            },
        },
    ]


def _netpol(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(NETPOL_LABELS)},
        "spec": spec,
    }


def network_policies(namespace: str, server: str, client: str) -> list[dict[str, Any]]:
    """What SEC1/SEC3 add in mesh mode to ``policies/fl-netpol.yaml``: clients -> server on the
    proxy's inbound port only, every pod -> the Linkerd control plane."""
    tcp_inbound = [{"protocol": "TCP", "port": INBOUND_PORT}]
    return [
        _netpol(namespace, "ztfl-mesh-server-inbound", {
            "podSelector": {"matchLabels": {COMPONENT: server}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {COMPONENT: client}}}],
                         "ports": tcp_inbound}],
        }),
        _netpol(namespace, "ztfl-mesh-client-egress", {
            "podSelector": {"matchLabels": {COMPONENT: client}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {COMPONENT: server}}}],
                        "ports": tcp_inbound}],
        }),
        _netpol(namespace, "ztfl-mesh-control-plane", {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"namespaceSelector": {
                    "matchLabels": {NAMESPACE_NAME: CONTROL_PLANE_NAMESPACE}}}],
                "ports": [{"protocol": "TCP", "port": p}
                          for p in (*CONTROL_PLANE_PORTS, INBOUND_PORT)],
            }],
        }),
    ]
