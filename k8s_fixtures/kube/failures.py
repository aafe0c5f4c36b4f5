"""Why a pod is not progressing, classified the way the harness reports failures, with the fix.

:func:`classify` reads a pod document as the API returns it and names every container that is
stuck or failed. Classes (``Failure.klass``):

* ``resource``   OOMKilled (now or on a previous run), or unschedulable for lack of cpu/memory;
* ``image``      ErrImagePull / ImagePullBackOff / ErrImageNeverPull / InvalidImageName: on
                 kind this means the image was not loaded (``kind load docker-image``);
* ``netem``      the NET profile's tc init container (``ztfl-netem-init``) failed (Init:Error);
* ``mtls``       the sidecar redirect init container (``ztfl-proxy-init``) failed;
* ``config``     CreateContainerConfigError / CreateContainerError (missing Secret/ConfigMap ...);
* ``scheduling`` unschedulable for any other reason (taints, node selectors, no nodes);
* ``crash``      the container exits non-zero or is in CrashLoopBackOff.

``terminal`` says whether waiting longer can help: a pod waiting in ImagePullBackOff will
retry forever, so readiness fails fast on it rather than at the deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k8s_fixtures.cluster import ContainerStatus
from k8s_fixtures.kube.status import condition, pod_status

NETEM_INIT = "ztfl-netem-init"
PROXY_INIT = "ztfl-proxy-init"
NODE_AGENT_WAIT = "ztfl-node-agent-wait"  # k8s_fixtures.hardening.WAIT_CONTAINER
IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull",
                           "InvalidImageName"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError",
                            "RunContainerError", "StartError"})


@dataclass(frozen=True)
class Failure:
    """One failed or stuck container (or an unschedulable pod: ``container`` None)."""

    namespace: str
    pod: str
    container: str | None
    klass: str
    reason: str
    detail: str
    fix: str
    terminal: bool = True

    def __str__(self) -> str:
        where = f"pod {self.namespace}/{self.pod}" + (
            f" container {self.container}" if self.container else "")
        detail = f": {self.detail}" if self.detail else ""
        return f"{where}: {self.reason} [{self.klass}]{detail}; fix: {self.fix}"


def _images(doc: Mapping[str, Any]) -> dict[str, str]:
    spec = doc.get("spec") or {}
    out: dict[str, str] = {}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if isinstance(c, Mapping):
                out[str(c.get("name"))] = str(c.get("image") or "")
    return out


def _limit(doc: Mapping[str, Any], container: str, resource: str) -> str | None:
    spec = doc.get("spec") or {}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if isinstance(c, Mapping) and c.get("name") == container:
                limits = (c.get("resources") or {}).get("limits") or {}
                v = limits.get(resource)
                return str(v) if v is not None else None
    return None


def image_fix(image: str, kind_cluster: str | None) -> str:
    if kind_cluster:
        return (f"build it (docker build -t {image} -f docker/Dockerfile .) and load it: "
                f"kind load docker-image {image} --name {kind_cluster}")
    return (f"push {image} to a registry the nodes can pull from (or load it into the "
            f"nodes' runtime), or pass another image with --ztfl-image")


def _one(doc: Mapping[str, Any], c: ContainerStatus, init: bool,
         kind_cluster: str | None) -> Failure | None:
    meta = doc.get("metadata") or {}
    ns, pod = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    msg = (c.message or "").strip().splitlines()[0] if c.message else ""
    if c.state == "waiting" and c.waiting_reason in IMAGE_REASONS:
        image = _images(doc).get(c.name, "?")
        return Failure(ns, pod, c.name, "image", c.waiting_reason or "",
                       f"image {image} not available to the node" + (f" ({msg})" if msg else ""),
                       image_fix(image, kind_cluster))
    if c.state == "waiting" and c.waiting_reason in CONFIG_REASONS:
        return Failure(ns, pod, c.name, "config", c.waiting_reason or "", msg,
                       "check that the Secrets/ConfigMaps the pod mounts exist in its namespace "
                       "(kubectl describe pod)")
    if c.reason == "OOMKilled":
        limit = _limit(doc, c.name, "memory")
        return Failure(ns, pod, c.name, "resource", "OOMKilled",
                       f"exit code {c.exit_code}, memory limit {limit or 'none (node OOM)'}, "
                       f"{c.restart_count} restarts",
                       "raise the memory limit of this role (workload resources) or lower the "
                       "model/batch size", terminal=c.state != "running")
    failed = c.exit_code is not None and c.exit_code != 0 and c.state == "terminated"
    looping = c.state == "waiting" and c.waiting_reason == "CrashLoopBackOff"
    if not (failed or looping):
        return None
    if c.reason == "ContainerStatusUnknown":
        return None  # never ran: the kubelet gave up on it because another container failed
    reason = ("Init:" if init else "") + (
        "CrashLoopBackOff" if looping else (c.reason or f"ExitCode:{c.exit_code}"))
    detail = f"exit code {c.exit_code}" + (f": {msg}" if msg else "")
    if init and c.name == NETEM_INIT:
        return Failure(ns, pod, c.name, "netem", reason, detail,
                       "the node kernel needs sch_netem (+ ifb for the down direction, tbf for "
                       "rate): modprobe sch_netem ifb on every node; kubectl logs "
                       f"-n {ns} {pod} -c {NETEM_INIT} shows the tc error")
    if init and c.name == NODE_AGENT_WAIT:
        return Failure(ns, pod, c.name, "netem", reason, detail,
                       "the ztfl node agent did not shape or redirect this restricted (SEC3) pod: "
                       "kubectl apply -f deploy/node-agent.yaml; kubectl logs -n ztfl-system "
                       f"ds/ztfl-node-agent; kubectl logs -n {ns} {pod} -c {NODE_AGENT_WAIT}")
    if init and c.name == PROXY_INIT:
        return Failure(ns, pod, c.name, "mtls", reason, detail,
                       "the node must allow NET_ADMIN and nftables in pods (Pod Security "
                       f"'privileged' for the run namespace); kubectl logs -n {ns} {pod} "
                       f"-c {PROXY_INIT}")
    return Failure(ns, pod, c.name, "crash", reason, detail,
                   f"kubectl logs -n {ns} {pod} -c {c.name} --previous")


def _unschedulable(doc: Mapping[str, Any]) -> Failure | None:
    cond = condition(doc, "PodScheduled")
    if not cond or cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    meta = doc.get("metadata") or {}
    msg = str(cond.get("message") or "")
    short = "Insufficient" in msg
    return Failure(str(meta.get("namespace") or ""), str(meta.get("name") or ""), None,
                   "resource" if short else "scheduling", "Unschedulable", msg,
                   "add nodes or lower the requests (workload resources / fewer clients per "
                   "node)" if short else "check node taints, selectors and node readiness "
                   "(kubectl describe pod)", terminal=False)


def classify(doc: Mapping[str, Any], kind_cluster: str | None = None) -> list[Failure]:
    """Every failure visible in the pod document, init containers first (in spec order)."""
    st = pod_status(doc)
    out: list[Failure] = []
    sched = _unschedulable(doc)
    if sched:
        out.append(sched)
    for c in st.init_containers:
        f = _one(doc, c, True, kind_cluster)
        if f:
            out.append(f)
    for c in st.containers:
        f = _one(doc, c, False, kind_cluster)
        if f:
            out.append(f)
    return out
