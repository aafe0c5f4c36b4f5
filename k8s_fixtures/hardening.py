"""SEC3's hardening of the workload's objects: the seed study's RBAC and Pod Security controls.

* RBAC: the run's ServiceAccounts and pods set ``automountServiceAccountToken: false`` (no
  pod holds an API token) and no RoleBinding of the run grants them anything;
* Pod Security: the namespace is labelled ``pod-security.kubernetes.io/enforce: restricted``
  and every container meets that level (:mod:`k8s_fixtures.psa`): a non-root uid, a read-only
  root filesystem, no privilege escalation, every capability dropped, seccomp RuntimeDefault.

A restricted pod cannot shape its own link or install its sidecar redirect (both need
``NET_ADMIN``), so the pod only asks for them by annotation (``ztfl.io/net-profile``,
``ztfl.io/sidecar-redirect``) and the node does it before the workload starts: the local
backend from its node (:mod:`k8s_fixtures.netem.local_overlay`,
:mod:`k8s_fixtures.local.nodeagent`); on Kubernetes the ztfl node agent, a privileged
DaemonSet in its own namespace (:mod:`k8s_fixtures.nodeagent`), which marks the pod
``ztfl.io/node-agent: applied``; the pod's first init container waits for that mark (read
from a downward API volume) so no workload process starts on an unshaped link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k8s_fixtures import psa

APPLIED_ANNOTATION = "ztfl.io/node-agent"  # "applied" once the node agent has done its part
APPLIED = "applied"
WAIT_CONTAINER = "ztfl-node-agent-wait"
PODINFO_VOLUME = "ztfl-podinfo"
PODINFO_DIR = "/etc/ztfl/podinfo"  # the downward API volume: the pod's annotations
TMP_VOLUME = "ztfl-tmp"
# a writable temporary directory (TMPDIR) on the read-only root: torch needs one as soon as
# a client builds its optimizer; not mounted at /tmp, which on the local backend would hide
# the machine's /tmp (and a checkout there) from the pod
TMP_DIR = "/var/run/ztfl/tmp"


def namespace_labels() -> dict[str, str]:
    """The Pod Security labels of a restricted namespace."""
    return {psa.ENFORCE: "restricted", psa.ENFORCE_VERSION: "latest"}


def service_account(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (a ServiceAccount) without a token mounted into its pods."""
    obj["automountServiceAccountToken"] = False
    return obj


def harden_pod(spec: dict[str, Any], uids: Mapping[str, int] | None = None) -> None:
    """Make a pod spec meet ``restricted`` (in place): no token, the pod's non-root user and
    RuntimeDefault, each container's restrictions (``uids``: a container's own user) and a
    writable ``TMPDIR``."""
    uids = uids or {}
    spec["automountServiceAccountToken"] = False
    spec["securityContext"] = psa.restricted_pod_context()
    spec["volumes"] = [*spec.get("volumes", []), {"name": TMP_VOLUME, "emptyDir": {}}]
    for key in ("initContainers", "containers"):
        for c in spec.get(key, []):
            c["securityContext"] = psa.restricted_container_context(uids.get(c["name"]))
            c["volumeMounts"] = [*c.get("volumeMounts", []),
                                 {"name": TMP_VOLUME, "mountPath": TMP_DIR}]
            c["env"] = [*c.get("env", []), {"name": "TMPDIR", "value": TMP_DIR}]


def wait_container(image: str, argv: Sequence[str], what: Sequence[str]) -> dict[str, Any]:
    """The init container waiting for the node agent's mark (``what``: for the message)."""
    return {
        "name": WAIT_CONTAINER,
        "image": image,
        "command": [*argv, "--annotations", f"{PODINFO_DIR}/annotations",
                    "--key", APPLIED_ANNOTATION, "--value", APPLIED, "--what", ",".join(what)],
        "volumeMounts": [{"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": True}],
    }


def podinfo_volume() -> dict[str, Any]:
    """The downward API volume holding the pod's annotations (updated as they change)."""
    return {"name": PODINFO_VOLUME, "downwardAPI": {
        "items": [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}
