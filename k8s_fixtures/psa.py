"""Pod Security Standards: the ``baseline`` and ``restricted`` profiles as a checker, and the
security contexts that meet ``restricted``.

:func:`violations` judges a pod (or a pod template's spec) against a level the way the Pod
Security admission controller does, rule by rule as the Kubernetes documentation "Pod Security
Standards" lists them (policy version ``latest``, Linux pods). No Python library implements
these rules (the only implementation is the admission plugin in Go, k8s.io/pod-security-admission),
so they are written out here; each message names the rule and the field, like the admission
controller's ``violates PodSecurity "restricted:latest": ...``.

The local backend enforces a namespace's ``pod-security.kubernetes.io/enforce`` label with it
(:mod:`k8s_fixtures.local.admission`); ``ztfl render``'s test judges every rendered SEC3 pod.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

ENFORCE = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
LEVELS = ("privileged", "baseline", "restricted")

# baseline: capabilities a container may add (the container runtimes' default set)
BASELINE_CAPS = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})
# restricted: the only volume sources allowed
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                "persistentVolumeClaim", "projected", "secret"})
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

NON_ROOT_UID = 10001  # the workload image's user (docker/Dockerfile)


def restricted_pod_context(uid: int = NON_ROOT_UID) -> dict[str, Any]:
    """A pod ``securityContext`` meeting ``restricted``: a non-root uid/gid, RuntimeDefault."""
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container_context(uid: int | None = None) -> dict[str, Any]:
    """A container ``securityContext`` meeting ``restricted`` (``uid``: its own user)."""
    sc: dict[str, Any] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                          "capabilities": {"drop": ["ALL"]}}
    if uid is not None:
        sc.update(runAsUser=uid, runAsGroup=uid)
    return sc


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in _CONTAINER_LISTS:
        items = spec.get(field)
        for i, c in enumerate(items if isinstance(items, list) else []):
            yield f"spec.{field}[{i}]", _map(c)


def _name(path: str, c: Mapping[str, Any]) -> str:
    return f'container "{c.get("name", path)}"'


def _baseline(spec: Mapping[str, Any], annotations: Mapping[str, str]) -> Iterator[str]:
    psc = _map(spec.get("securityContext"))
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            yield f"host namespaces (spec.{field}=true)"
    if _map(psc.get("windowsOptions")).get("hostProcess") is True:
        yield "hostProcess (spec.securityContext.windowsOptions.hostProcess=true)"
    for i, v in enumerate(spec.get("volumes") or []):
        if "hostPath" in _map(v):
            yield f"hostPath volumes (spec.volumes[{i}] {_map(v).get('name')!r})"
    for i, s in enumerate(psc.get("sysctls") or []):
        name = _map(s).get("name")
        if name not in SAFE_SYSCTLS:
            yield f"forbidden sysctls (spec.securityContext.sysctls[{i}] {name!r})"
    yield from _selinux(_map(psc.get("seLinuxOptions")), "spec.securityContext")
    yield from _profile(psc, "spec.securityContext", "seccompProfile", ("Unconfined",))
    yield from _profile(psc, "spec.securityContext", "appArmorProfile", ("Unconfined",))
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            yield f"forbidden AppArmor profile (metadata.annotations[{key}]={value!r})"
    for path, c in _containers(spec):
        sc, who = _map(c.get("securityContext")), _name(path, c)
        if sc.get("privileged") is True:
            yield f"privileged ({who} must not set securityContext.privileged=true)"
        added = sorted(set(_map(sc.get("capabilities")).get("add") or []) - BASELINE_CAPS)
        if added:
            yield f"non-default capabilities ({who} must not include {added} in " \
                  "securityContext.capabilities.add)"
        for j, p in enumerate(c.get("ports") or []):
            if _map(p).get("hostPort") not in (None, 0):
                yield f"hostPort ({who} uses {path}.ports[{j}].hostPort)"
        if _map(sc.get("windowsOptions")).get("hostProcess") is True:
            yield f"hostProcess ({who} sets securityContext.windowsOptions.hostProcess=true)"
        if sc.get("procMount") not in (None, "Default"):
            yield f"procMount ({who} must not set securityContext.procMount)"
        yield from _selinux(_map(sc.get("seLinuxOptions")), f"{path}.securityContext")
        yield from _profile(sc, f"{path}.securityContext", "seccompProfile", ("Unconfined",))
        yield from _profile(sc, f"{path}.securityContext", "appArmorProfile", ("Unconfined",))


def _selinux(opts: Mapping[str, Any], path: str) -> Iterator[str]:
    if opts.get("type", "") not in SELINUX_TYPES:
        yield f"seLinuxOptions ({path}.seLinuxOptions.type={opts['type']!r})"
    for key in ("user", "role"):
        if opts.get(key):
            yield f"seLinuxOptions ({path}.seLinuxOptions.{key} must not be set)"


def _profile(sc: Mapping[str, Any], path: str, key: str, forbidden: tuple[str, ...]) -> \
        Iterator[str]:
    kind = _map(sc.get(key)).get("type")
    if kind in forbidden:
        yield f"{key} ({path}.{key}.type={kind!r})"


def _restricted(spec: Mapping[str, Any]) -> Iterator[str]:
    psc = _map(spec.get("securityContext"))
    for i, v in enumerate(spec.get("volumes") or []):
        sources = [k for k in _map(v) if k != "name"]
        bad = [s for s in sources if s not in RESTRICTED_VOLUMES]
        if bad:
            yield f"restricted volume types (spec.volumes[{i}] {_map(v).get('name')!r} uses {bad})"
    if psc.get("runAsUser") == 0:
        yield "runAsUser=0 (spec.securityContext.runAsUser must not be 0)"
    pod_nonroot = psc.get("runAsNonRoot")
    pod_seccomp = _map(psc.get("seccompProfile")).get("type")
    if pod_nonroot is False:
        yield "runAsNonRoot != true (spec.securityContext.runAsNonRoot=false)"
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        yield f"seccompProfile (spec.securityContext.seccompProfile.type={pod_seccomp!r})"
    for path, c in _containers(spec):
        sc, who = _map(c.get("securityContext")), _name(path, c)
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"allowPrivilegeEscalation != false ({who} must set " \
                  "securityContext.allowPrivilegeEscalation=false)"
        caps = _map(sc.get("capabilities"))
        if "ALL" not in (caps.get("drop") or []):
            yield f"unrestricted capabilities ({who} must set " \
                  'securityContext.capabilities.drop=["ALL"])'
        added = sorted(set(caps.get("add") or []) - {"NET_BIND_SERVICE"})
        if added:
            yield f"unrestricted capabilities ({who} must not include {added} in " \
                  "securityContext.capabilities.add)"
        nonroot = sc.get("runAsNonRoot", pod_nonroot)
        if nonroot is not True:
            yield f"runAsNonRoot != true ({who} or the pod must set " \
                  "securityContext.runAsNonRoot=true)"
        if sc.get("runAsUser") == 0:
            yield f"runAsUser=0 ({who} must not set securityContext.runAsUser=0)"
        seccomp = _map(sc.get("seccompProfile")).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"seccompProfile ({who} or the pod must set " \
                  'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'


def violations(spec: Mapping[str, Any], level: str,
               annotations: Mapping[str, str] | None = None) -> list[str]:
    """Every rule of ``level`` the pod ``spec`` breaks (empty: admitted). ``privileged`` admits
    everything; ``restricted`` includes every ``baseline`` rule."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r} (use one of {', '.join(LEVELS)})")
    if level == "privileged":
        return []
    out = list(_baseline(spec, annotations or {}))
    if level == "restricted":
        out += _restricted(spec)
    return out


def pod_violations(pod: Mapping[str, Any], level: str) -> list[str]:
    """:func:`violations` of a Pod object (its annotations included)."""
    meta = _map(pod.get("metadata"))
    return violations(_map(pod.get("spec")), level, _map(meta.get("annotations")))


def refusal(level: str, found: list[str]) -> str:
    """The admission message for a refused pod, worded as the admission controller words it."""
    return f'violates PodSecurity "{level}:latest": ' + ", ".join(found)
