"""The ztfl node agent's Kubernetes objects: its own namespace (Pod Security ``privileged``:
the agent enters other pods' network namespaces), ServiceAccount, the ClusterRole it needs
(read pods, mark them), the binding, and the DaemonSet. ``deploy/node-agent.yaml`` holds
:func:`objects` for ``kubectl apply``; a test keeps the two equal."""

from __future__ import annotations

from typing import Any

from k8s_fixtures import psa
from k8s_fixtures.workload import DEFAULT_IMAGE

NAMESPACE = "ztfl-system"
NAME = "ztfl-node-agent"
NODE_ENV = "NODE_NAME"  # the agent's node, from the downward API
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "pytest-ztfl"}
RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}]


def objects(image: str = DEFAULT_IMAGE) -> list[dict[str, Any]]:
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)}
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NAMESPACE, "labels": {**LABELS, psa.ENFORCE: "privileged"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": NAME, "labels": dict(LABELS)}, "rules": RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": NAME, "labels": dict(LABELS)},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": dict(meta), "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {"metadata": {"labels": dict(LABELS)}, "spec": {
                "serviceAccountName": NAME,
                "hostPID": True,  # to find each pod's processes, and so its network namespace
                "tolerations": [{"operator": "Exists"}],
                "containers": [{
                    "name": "agent", "image": image,
                    "command": ["python", "-m", "k8s_fixtures.nodeagent.agent"],
                    "env": [{"name": NODE_ENV,
                             "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "securityContext": {"privileged": True, "runAsUser": 0},
                }],
            }},
        }},
    ]
