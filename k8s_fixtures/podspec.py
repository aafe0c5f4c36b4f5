"""Typed pod specs: the containers, ports, env, mounts, probes and volumes the backends act
on, and :func:`parse_pod_spec`, which checks a pod spec field by field (one-line errors naming
the field, see :func:`k8s_fixtures.metadata.fail`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from k8s_fixtures.cluster import Obj
from k8s_fixtures.metadata import DNS_LABEL, fail
from k8s_fixtures.quantities import cpu_millis, memory_bytes
from k8s_fixtures.seccontext import SecurityContext
from k8s_fixtures.seccontext import parse as parse_security

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str | None = None  # kept: NetworkPolicy ports may refer to it by name


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    source: tuple[Literal["secretKeyRef", "configMapKeyRef"], str, str] | None = None
    optional: bool = False


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class Probe:
    """A readinessProbe: ``tcpSocket.port`` (number or named port) or ``exec.command``."""

    tcp_port: int | str | None = None
    command: tuple[str, ...] | None = None
    initial_delay: float = 0.0
    period: float = 1.0


@dataclass(frozen=True)
class Container:
    name: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    working_dir: str | None = None
    cpu_millis: int | None = None
    memory_bytes: int | None = None
    volume_mounts: tuple[VolumeMount, ...] = ()
    readiness: Probe | None = None
    security: SecurityContext = field(default_factory=SecurityContext)  # pod's + own

    @property
    def argv(self) -> tuple[str, ...]:
        return self.command + self.args


@dataclass(frozen=True)
class Volume:
    name: str
    kind: Literal["configMap", "secret", "emptyDir"]
    source: str = ""  # the ConfigMap/Secret name
    items: tuple[tuple[str, str], ...] = ()  # (key, path); empty = every key
    optional: bool = False
    default_mode: int = 0o644


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...] = ()
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    service_account: str = "default"
    termination_grace: float = 5.0
    init_containers: tuple[Container, ...] = ()  # run to completion, in order, before containers
    automount_token: bool | None = None  # automountServiceAccountToken (None: the account's)

    def container_lists(self) -> tuple[tuple[str, tuple[Container, ...]], ...]:
        """(field name, containers) for ``initContainers`` and ``containers``, for checks that
        treat both alike and name the field in their errors."""
        return (("initContainers", self.init_containers), ("containers", self.containers))


_POD_FIELDS = {
    "containers", "volumes", "restartPolicy", "serviceAccountName", "serviceAccount",
    "terminationGracePeriodSeconds", "automountServiceAccountToken", "nodeSelector",
    "securityContext", "hostname", "subdomain", "enableServiceLinks", "dnsPolicy",
    "initContainers",
}
_CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "ports", "resources",
    "volumeMounts", "workingDir", "readinessProbe", "securityContext", "stdin", "tty",
    "terminationMessagePolicy",
}


def _strs(obj: Obj, path: str, v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise fail(obj, path, "must be a list of strings (quote numbers)")
    return tuple(v)


def _port_number(obj: Obj, path: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
        raise fail(obj, path, f"{v!r} is not a port number (1-65535)")
    return v


def parse_pod_spec(obj: Obj, spec: Any, path: str = "spec") -> PodSpec:
    """The typed form of a pod spec (of a Pod, or a template's ``spec``)."""
    if not isinstance(spec, Mapping):
        raise fail(obj, path, "required (a mapping)")
    for key in spec:
        if key not in _POD_FIELDS:
            raise fail(obj, f"{path}.{key}", "not supported by this backend")
    raw = spec.get("containers")
    if not isinstance(raw, list) or not raw:
        raise fail(obj, f"{path}.containers", "required (a non-empty list)")
    pod_sc = spec.get("securityContext")
    containers = tuple(_container(obj, c, f"{path}.containers[{i}]", pod_sc, path)
                       for i, c in enumerate(raw))
    raw_init = spec.get("initContainers")
    raw_init = [] if raw_init is None else raw_init
    if not isinstance(raw_init, list):
        raise fail(obj, f"{path}.initContainers", "must be a list")
    init = tuple(_container(obj, c, f"{path}.initContainers[{i}]", pod_sc, path, init=True)
                 for i, c in enumerate(raw_init))
    names = [c.name for c in (*init, *containers)]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise fail(obj, f"{path}.containers", f"container name {dup!r} is not unique "
                                              "(names are shared with initContainers)")
    volumes = tuple(
        _volume(obj, v, f"{path}.volumes[{i}]") for i, v in enumerate(spec.get("volumes") or [])
    )
    vnames = {v.name for v in volumes}
    for field_, cs in (("initContainers", init), ("containers", containers)):
        for i, c in enumerate(cs):
            for j, m in enumerate(c.volume_mounts):
                if m.name not in vnames:
                    raise fail(obj, f"{path}.{field_}[{i}].volumeMounts[{j}].name",
                               f"no volume named {m.name!r} in {path}.volumes")
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        raise fail(obj, f"{path}.restartPolicy", f"{policy!r}: use Always, OnFailure or Never")
    grace = spec.get("terminationGracePeriodSeconds", 5)
    if not isinstance(grace, int | float) or grace < 0:
        raise fail(obj, f"{path}.terminationGracePeriodSeconds", "must be a number >= 0")
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    automount = spec.get("automountServiceAccountToken")
    if automount is not None and not isinstance(automount, bool):
        raise fail(obj, f"{path}.automountServiceAccountToken", "must be true or false")
    return PodSpec(containers, volumes, policy, str(sa), float(grace), init, automount)


def _container(obj: Obj, c: Any, path: str, pod_sc: Any, pod_path: str, *,
               init: bool = False) -> Container:
    if not isinstance(c, Mapping):
        raise fail(obj, path, "must be a mapping")
    for key in c:
        if key not in _CONTAINER_FIELDS:
            raise fail(obj, f"{path}.{key}", "not supported by this backend")
    if init and "readinessProbe" in c:
        raise fail(obj, f"{path}.readinessProbe", "must not be set for init containers")
    security = parse_security(obj, pod_sc, c.get("securityContext"),
                              f"{pod_path}.securityContext", f"{path}.securityContext")
    name = c.get("name")
    if not isinstance(name, str) or not DNS_LABEL.match(name):
        raise fail(obj, f"{path}.name", f"{name!r} is not a valid container name")
    command = _strs(obj, f"{path}.command", c.get("command"))
    args = _strs(obj, f"{path}.args", c.get("args"))
    wd = c.get("workingDir")
    if wd is not None and (not isinstance(wd, str) or not wd.startswith("/")):
        raise fail(obj, f"{path}.workingDir", "must be an absolute path")
    env = tuple(_env(obj, e, f"{path}.env[{i}]") for i, e in enumerate(c.get("env") or []))
    ports = tuple(_cport(obj, p, f"{path}.ports[{i}]") for i, p in enumerate(c.get("ports") or []))
    pnames = [p.name for p in ports if p.name]
    if len(set(pnames)) != len(pnames):
        raise fail(obj, f"{path}.ports", "port names must be unique within a container")
    cpu, mem = _limits(obj, c.get("resources"), f"{path}.resources")
    mounts = tuple(
        _mount(obj, m, f"{path}.volumeMounts[{i}]")
        for i, m in enumerate(c.get("volumeMounts") or [])
    )
    probe = _probe(obj, c.get("readinessProbe"), f"{path}.readinessProbe", pnames)
    return Container(name, command, args, env, ports, wd, cpu, mem, mounts, probe, security)



def _env(obj: Obj, e: Any, path: str) -> EnvVar:
    if not isinstance(e, Mapping) or not isinstance(e.get("name"), str):
        raise fail(obj, f"{path}.name", "required (a string)")
    name = e["name"]
    if not _ENV_NAME.match(name):
        raise fail(obj, f"{path}.name", f"{name!r} is not a valid variable name")
    if "value" in e:
        if not isinstance(e["value"], str):
            raise fail(obj, f"{path}.value", "must be a string (quote numbers)")
        return EnvVar(name, e["value"])
    vf = e.get("valueFrom")
    if not isinstance(vf, Mapping) or len(vf) != 1:
        raise fail(obj, path, "needs value, or valueFrom with one of secretKeyRef/configMapKeyRef")
    (kind, src), = vf.items()
    if kind not in ("secretKeyRef", "configMapKeyRef"):
        raise fail(obj, f"{path}.valueFrom.{kind}", "not supported (secretKeyRef, configMapKeyRef)")
    if not isinstance(src, Mapping) or not all(
        isinstance(src.get(k), str) for k in ("name", "key")
    ):
        raise fail(obj, f"{path}.valueFrom.{kind}", "needs name and key")
    return EnvVar(name, None, (kind, src["name"], src["key"]), bool(src.get("optional", False)))


def _cport(obj: Obj, p: Any, path: str) -> ContainerPort:
    if not isinstance(p, Mapping):
        raise fail(obj, path, "must be a mapping")
    port = _port_number(obj, f"{path}.containerPort", p.get("containerPort"))
    proto = p.get("protocol", "TCP")
    if proto not in ("TCP", "UDP", "SCTP"):
        raise fail(obj, f"{path}.protocol", f"{proto!r}: use TCP, UDP or SCTP")
    name = p.get("name")
    if name is not None and (
        not isinstance(name, str) or len(name) > 15 or not DNS_LABEL.match(name)
        or name.isdigit()
    ):
        raise fail(obj, f"{path}.name", f"{name!r} is not a valid port name (IANA_SVC_NAME)")
    return ContainerPort(port, proto, name)


def _limits(obj: Obj, res: Any, path: str) -> tuple[int | None, int | None]:
    if res is None:
        return None, None
    if not isinstance(res, Mapping):
        raise fail(obj, path, "must be a mapping")
    limits = res.get("limits") or {}
    if not isinstance(limits, Mapping):
        raise fail(obj, f"{path}.limits", "must be a mapping")
    for key in limits:
        if key not in ("cpu", "memory"):
            raise fail(obj, f"{path}.limits.{key}", "not supported (cpu, memory)")
    try:
        cpu = cpu_millis(limits["cpu"]) if "cpu" in limits else None
    except ValueError as e:
        raise fail(obj, f"{path}.limits.cpu", str(e)) from None
    try:
        mem = memory_bytes(limits["memory"]) if "memory" in limits else None
    except ValueError as e:
        raise fail(obj, f"{path}.limits.memory", str(e)) from None
    return cpu, mem


def _mount(obj: Obj, m: Any, path: str) -> VolumeMount:
    if not isinstance(m, Mapping):
        raise fail(obj, path, "must be a mapping")
    for key in m:
        if key not in ("name", "mountPath", "readOnly"):
            raise fail(obj, f"{path}.{key}", "not supported (name, mountPath, readOnly)")
    mp = m.get("mountPath")
    if not isinstance(mp, str) or not mp.startswith("/") or mp.rstrip("/") == "" or ".." in mp:
        raise fail(obj, f"{path}.mountPath", f"{mp!r} must be an absolute path other than /")
    if not isinstance(m.get("name"), str):
        raise fail(obj, f"{path}.name", "required (a string)")
    return VolumeMount(m["name"], mp.rstrip("/"), bool(m.get("readOnly", False)))


def _volume(obj: Obj, v: Any, path: str) -> Volume:
    if not isinstance(v, Mapping) or not isinstance(v.get("name"), str):
        raise fail(obj, f"{path}.name", "required (a string)")
    kinds = [k for k in v if k != "name"]
    if len(kinds) != 1 or kinds[0] not in ("configMap", "secret", "emptyDir"):
        raise fail(obj, path, f"volume sources {kinds}: supported are configMap, secret, emptyDir")
    kind = kinds[0]
    src = v[kind] or {}
    if not isinstance(src, Mapping):
        raise fail(obj, f"{path}.{kind}", "must be a mapping")
    if kind == "emptyDir":
        return Volume(v["name"], "emptyDir")
    key = "secretName" if kind == "secret" else "name"
    name = src.get(key)
    if not isinstance(name, str):
        raise fail(obj, f"{path}.{kind}.{key}", "required (a string)")
    items = []
    for i, it in enumerate(src.get("items") or []):
        if not isinstance(it, Mapping) or not all(
            isinstance(it.get(k), str) for k in ("key", "path")
        ) or it["path"].startswith("/") or ".." in it["path"]:
            raise fail(obj, f"{path}.{kind}.items[{i}]", "needs key and a relative path")
        items.append((it["key"], it["path"]))
    mode = src.get("defaultMode", 0o644)
    if not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise fail(obj, f"{path}.{kind}.defaultMode", "must be a file mode 0-0777")
    return Volume(v["name"], kind, name, tuple(items), bool(src.get("optional", False)), mode)


def _probe(obj: Obj, p: Any, path: str, port_names: list[str]) -> Probe | None:
    if p is None:
        return None
    if not isinstance(p, Mapping):
        raise fail(obj, path, "must be a mapping")
    timing = {"initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold",
              "successThreshold"}
    handlers = [k for k in p if k not in timing]
    if handlers == ["tcpSocket"] and isinstance(p["tcpSocket"], Mapping):
        port = p["tcpSocket"].get("port")
        if isinstance(port, str):
            if port not in port_names:
                raise fail(obj, f"{path}.tcpSocket.port", f"no container port named {port!r}")
        else:
            _port_number(obj, f"{path}.tcpSocket.port", port)
        probe = Probe(tcp_port=port)
    elif handlers == ["exec"] and isinstance(p["exec"], Mapping):
        cmd = _strs(obj, f"{path}.exec.command", p["exec"].get("command"))
        if not cmd:
            raise fail(obj, f"{path}.exec.command", "required")
        probe = Probe(command=cmd)
    else:
        raise fail(obj, path, f"handlers {handlers}: supported are tcpSocket and exec")
    return Probe(
        probe.tcp_port, probe.command,
        float(p.get("initialDelaySeconds", 0)), float(p.get("periodSeconds", 1)),
    )
