"""Admission for the local backend: check a batch of objects, and plan what to create.

Everything that can be wrong with a batch is found here, before anything is created, so a
bad batch leaves nothing behind: unsupported kinds and fields, malformed objects, missing
namespaces / ConfigMaps / Secrets / keys, commands that do not exist, mount paths the backend
cannot provide, and a pod CIDR without room for the new pods. Deployments and Jobs are
expanded into the pods they stand for (stable names ``<name>-<i>``). ``initContainers`` are
checked exactly like ``containers``.

Accepted but not acted on locally: ``image``/``imagePullPolicy`` (commands run from this
machine's filesystem, so ``command`` is required). ``securityContext`` is applied when the
container runs (:mod:`.confine`); a namespace labelled ``pod-security.kubernetes.io/enforce``
(``baseline``, ``restricted``) refuses the pods that level forbids (:mod:`k8s_fixtures.psa`),
as Kubernetes' Pod Security admission does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from k8s_fixtures import psa
from k8s_fixtures.cluster import Obj
from k8s_fixtures.local.pods import DEFAULT_PATH
from k8s_fixtures.local.view import NAMESPACE_NAME_LABEL
from k8s_fixtures.manifests import (
    Container,
    PodSpec,
    annotations_of,
    config_data,
    fail,
    labels_of,
    match_labels,
    namespace_of,
    parse_pod_spec,
    selector_matches,
    template_meta,
)

API_VERSIONS = {
    "Namespace": "v1", "Pod": "v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
    "ServiceAccount": "v1", "Deployment": "apps/v1", "Job": "batch/v1",
}
ORDER = ["Namespace", "ServiceAccount", "ConfigMap", "Secret", "*", "Service", "Pod",
         "Deployment", "Job"]
Key = tuple[str, str, str]  # (kind, namespace or "", name)


def key_of(obj: Mapping[str, Any]) -> Key:
    kind = str(obj["kind"])
    ns = "" if kind == "Namespace" else namespace_of(obj)
    return (kind, ns, str(obj["metadata"]["name"]))


def order(kind: str) -> int:
    return ORDER.index(kind) if kind in ORDER else ORDER.index("*")


@dataclass(frozen=True)
class NewPod:
    """A pod to create: from a Pod object or a workload's template."""

    namespace: str
    name: str
    labels: dict[str, str]
    spec: PodSpec
    obj: Obj  # the object it came from (for error messages and env/volume lookups)
    owner: str | None = None  # "Deployment/x", "Job/x"
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    """What applying a batch means: objects to store, pods to create and to delete."""

    store: dict[Key, Obj] = field(default_factory=dict)
    new_pods: list[NewPod] = field(default_factory=list)
    delete_pods: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[Key] = field(default_factory=list)


def _check_command(obj: Obj, spec: PodSpec, path: str, env_path: dict[str, str]) -> None:
    for field_, containers in spec.container_lists():
        for i, c in enumerate(containers):
            _check_container_command(obj, c, f"{path}.{field_}[{i}]", env_path)


def _check_container_command(obj: Obj, c: Container, path: str,
                             env_path: dict[str, str]) -> None:
    cpath = f"{path}.command"
    if not c.command:
        raise fail(obj, cpath, "required by the local backend (it runs no images, so "
                               "there is no image entrypoint)")
    exe = c.command[0]
    search = env_path.get(c.name, DEFAULT_PATH)
    if "/" in exe:
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise fail(obj, cpath, f"{exe!r} does not exist or is not executable")
    elif shutil.which(exe, path=search) is None:
        raise fail(obj, cpath, f"{exe!r} not found in PATH {search}")
    uid = c.security.run_as_user
    if uid:
        found = exe if "/" in exe else str(shutil.which(exe, path=search))
        real = os.path.realpath(found)
        # the directories on its way are made reachable in the pod (confine.reach): the file
        # itself must let that user execute it
        if not _allows(os.stat(real), uid, c.security.run_as_group or 0, 1):
            raise fail(obj, cpath, f"{exe!r} cannot be run by uid {uid} (runAsUser): {real} "
                                   "is not executable by it")
    for j, m in enumerate(c.volume_mounts):
        anc = m.mount_path
        while not os.path.isdir(anc):
            anc = os.path.dirname(anc)
        if anc == "/":
            raise fail(obj, f"{path}.volumeMounts[{j}].mountPath",
                       f"{m.mount_path}: the local backend needs an existing parent "
                       "directory other than / (it overlays that directory privately)")


def _allows(st: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """Whether the mode of ``st`` grants ``bits`` (4 r, 2 w, 1 x) to ``uid``/``gid``."""
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    return (st.st_mode >> shift) & bits == bits


def _check_refs(obj: Obj, spec: PodSpec, path: str, ns: str,
                objects: Mapping[Key, Obj]) -> dict[str, str]:
    """Check env/volume references; return container name -> PATH from its env."""
    paths: dict[str, str] = {}
    for field_, containers in spec.container_lists():
        for i, c in enumerate(containers):
            for j, e in enumerate(c.env):
                if e.name == "PATH" and e.value is not None:
                    paths[c.name] = e.value
                if e.source is None:
                    continue
                kind_field, src, k = e.source
                kind = "Secret" if kind_field == "secretKeyRef" else "ConfigMap"
                ref = objects.get((kind, ns, src))
                if ref is None or k not in config_data(ref):
                    if e.optional:
                        continue
                    what = (f"no {kind} {src!r}" if ref is None
                            else f"{kind} {src!r} has no key {k!r}")
                    raise fail(obj, f"{path}.{field_}[{i}].env[{j}].valueFrom.{kind_field}",
                               what)
    for i, v in enumerate(spec.volumes):
        if v.kind == "emptyDir":
            continue
        kind = "Secret" if v.kind == "secret" else "ConfigMap"
        field_ = "secretName" if v.kind == "secret" else "name"
        ref = objects.get((kind, ns, v.source))
        if ref is None:
            if v.optional:
                continue
            raise fail(obj, f"{path}.volumes[{i}].{v.kind}.{field_}", f"no {kind} {v.source!r}")
        data = config_data(ref)
        for j, (k, _) in enumerate(v.items):
            if k not in data:
                raise fail(obj, f"{path}.volumes[{i}].{v.kind}.items[{j}].key",
                           f"{kind} {v.source!r} has no key {k!r}")
    return paths


def _pod_spec(obj: Obj, spec: Any, path: str, objects: Mapping[Key, Obj]) -> PodSpec:
    ps = parse_pod_spec(obj, spec, path)
    paths = _check_refs(obj, ps, path, namespace_of(obj), objects)
    _check_command(obj, ps, path, paths)
    return ps


def _pod_security(obj: Obj, spec: Any, annotations: Mapping[str, str],
                  objects: Mapping[Key, Obj]) -> None:
    """Refuse a pod (or a template's pods) its namespace's Pod Security level forbids
    (label ``pod-security.kubernetes.io/enforce``), as the admission controller does."""
    namespace = objects.get(("Namespace", "", namespace_of(obj))) or {}
    level = labels_of(namespace).get(psa.ENFORCE, "privileged")
    if level not in psa.LEVELS:
        raise fail(namespace, f"metadata.labels[{psa.ENFORCE}]",
                   f"{level!r}: use one of {', '.join(psa.LEVELS)}")
    found = psa.violations(spec if isinstance(spec, Mapping) else {}, level, annotations)
    if found:
        raise fail(obj, "spec", psa.refusal(level, found))


def _replicas(obj: Obj, key: str, default: int) -> int:
    n = obj.get("spec", {}).get(key, default)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise fail(obj, f"spec.{key}", f"{n!r} must be a non-negative integer")
    return n


def _workload(obj: Obj, objects: Mapping[Key, Obj]) -> tuple[
        dict[str, str], dict[str, str], PodSpec]:
    labels, annotations, raw = template_meta(obj)
    spec = _pod_spec(obj, raw, "spec.template.spec", objects)
    sel = match_labels(obj, "spec.selector")
    if obj["kind"] == "Deployment":
        if not sel:
            raise fail(obj, "spec.selector.matchLabels", "required")
        if spec.restart_policy != "Always":
            raise fail(obj, "spec.template.spec.restartPolicy", "must be Always for a Deployment")
    elif spec.restart_policy == "Always":
        raise fail(obj, "spec.template.spec.restartPolicy", "must be Never or OnFailure for a Job")
    if sel and not selector_matches(sel, labels):
        raise fail(obj, "spec.selector", "does not match spec.template.metadata.labels")
    return labels, annotations, spec


def _service(obj: Obj) -> None:
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise fail(obj, "spec", "must be a mapping")
    typ = spec.get("type", "ClusterIP")
    if typ != "ClusterIP":
        raise fail(obj, "spec.type", f"{typ!r} is not supported by the local backend "
                                     "(ClusterIP only)")
    sel = spec.get("selector") or {}
    if not isinstance(sel, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in sel.items()
    ):
        raise fail(obj, "spec.selector", "must map strings to strings")
    for i, p in enumerate(spec.get("ports") or []):
        port = p.get("port") if isinstance(p, Mapping) else None
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise fail(obj, f"spec.ports[{i}].port", f"{port!r} is not a port number")


def admit(
    batch: list[Obj],
    stored: Mapping[Key, Obj],
    pods: Mapping[tuple[str, str], str | None],
    overlay_kinds: Collection[str],
    free_ips: int,
    validate_overlay: Mapping[str, Any],
) -> Plan:
    """Check ``batch`` against the cluster's ``stored`` objects and existing ``pods``
    (key -> owner), returning the plan, or raise ManifestError with one line."""
    plan = Plan()
    seen: set[Key] = set()
    for obj in batch:
        kind = obj["kind"]
        if kind in overlay_kinds:
            validate_overlay[kind](obj)
        elif kind == "NetworkPolicy":
            raise fail(obj, "kind", "NetworkPolicy needs a registered overlay (the "
                                    "NetworkPolicy enforcer) and none is registered: it would "
                                    "not be enforced")
        elif kind not in API_VERSIONS:
            supported = ", ".join([*API_VERSIONS, *overlay_kinds])
            raise fail(obj, "kind", f"{kind} is not supported by the local backend "
                                    f"(supported: {supported})")
        elif obj["apiVersion"] != API_VERSIONS[kind]:
            raise fail(obj, "apiVersion", f"{obj['apiVersion']!r}: expected "
                                          f"{API_VERSIONS[kind]!r} for {kind}")
        k = key_of(obj)
        if k in seen:
            raise fail(obj, "metadata.name", "appears twice in this batch")
        seen.add(k)
    merged: dict[Key, Obj] = dict(stored)
    for obj in sorted(batch, key=lambda o: order(o["kind"])):
        k = key_of(obj)
        kind, ns, name = k
        if kind == "Namespace":
            labels = {**labels_of(obj), NAMESPACE_NAME_LABEL: name}
            obj = {**obj, "metadata": {**obj["metadata"], "labels": labels}}
        elif ("Namespace", "", ns) not in merged:
            raise fail(obj, "metadata.namespace", f"namespace {ns!r} does not exist")
        if kind in ("ConfigMap", "Secret"):
            config_data(obj)
        elif kind == "Service":
            _service(obj)
        elif kind == "Pod":
            spec = _pod_spec(obj, obj.get("spec"), "spec", merged)
            _pod_security(obj, obj.get("spec"), annotations_of(obj), merged)
            if k in stored:
                if stored[k] == obj:
                    plan.unchanged.append(k)
                    continue
                raise fail(obj, "spec", "pod already exists with a different spec (pods are "
                                        "immutable: delete it first)")
            if (ns, name) in pods:
                raise fail(obj, "metadata.name", f"a pod {ns}/{name} already exists "
                                                 f"(made by {pods[(ns, name)]})")
            plan.new_pods.append(NewPod(ns, name, labels_of(obj), spec, obj,
                                        annotations=annotations_of(obj)))
        elif kind in ("Deployment", "Job"):
            _plan_workload(plan, obj, merged, stored, pods)
        merged[k] = obj
        plan.store[k] = obj
    if len(plan.new_pods) > free_ips:
        first = plan.new_pods[0].obj
        raise fail(first, "metadata.name", f"the pod CIDR has {free_ips} free addresses, "
                                           f"{len(plan.new_pods)} pods need one")
    return plan


def _plan_workload(plan: Plan, obj: Obj, merged: Mapping[Key, Obj], stored: Mapping[Key, Obj],
                   pods: Mapping[tuple[str, str], str | None]) -> None:
    kind, ns, name = key_of(obj)
    labels, annotations, spec = _workload(obj, merged)
    _pod_security(obj, obj["spec"]["template"].get("spec"), annotations, merged)
    if kind == "Job":
        for f in ("completions", "parallelism"):
            if _replicas(obj, f, 1) != 1:
                raise fail(obj, f"spec.{f}", "only 1 is supported by the local backend")
        n = 1
    else:
        n = _replicas(obj, "replicas", 1)
    owner = f"{kind}/{name}"
    mine = sorted(p for p, o in pods.items() if o == owner and p[0] == ns)
    old = stored.get((kind, ns, name))
    same_template = old is not None and old["spec"].get("template") == obj["spec"]["template"]
    if not same_template:
        plan.delete_pods.extend(mine)
        mine = []
    keep = {f"{name}-{i}" for i in range(n)}
    plan.delete_pods.extend(p for p in mine if p[1] not in keep)
    for i in range(n):
        pod = f"{name}-{i}"
        if (ns, pod) in mine:
            continue
        if (ns, pod) in pods and pods[(ns, pod)] != owner:
            raise fail(obj, "metadata.name", f"its pod name {ns}/{pod} is taken by "
                                             f"{pods[(ns, pod)] or 'a Pod'}")
        plan.new_pods.append(NewPod(ns, pod, dict(labels), spec, obj, owner, dict(annotations)))
