"""Reading and checking Kubernetes objects: YAML files or dicts in, typed pod specs out.

Every error is one line ``Kind namespace/name: field.path: what is wrong`` so a user can find
the offending line of their manifest. Only the fields the backends act on are parsed into
types; the rest of an object is kept as is and passed through.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml

from k8s_fixtures.cluster import ManifestError, Obj, ObjectRef, Objects

CLUSTER_SCOPED = frozenset({"Namespace"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_MEM_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


# ---------------------------------------------------------------------------- loading


def load(objects: Objects) -> list[Obj]:
    """Objects from a dict, an iterable of dicts, or a YAML file (multi-document, ``List``)."""
    if isinstance(objects, str | Path):
        path = Path(objects)
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except OSError as e:
            raise ManifestError(f"{path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ManifestError(f"{path}:{line}: not valid YAML: {problem}") from None
        raw: list[Any] = [d for d in docs if d is not None]
        source = str(path)
    elif isinstance(objects, Mapping):
        raw, source = [objects], "object"
    else:
        raw, source = list(objects), "objects"
    out: list[Obj] = []
    for i, doc in enumerate(raw):
        if not isinstance(doc, Mapping):
            raise ManifestError(f"{source}[{i}]: expected a mapping, got {type(doc).__name__}")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(load(doc["items"]))
        else:
            out.append(dict(doc))
    for obj in out:
        check_metadata(obj)
    return out


def where(obj: Mapping[str, Any]) -> str:
    """``Kind ns/name`` (or ``Kind name``) for error messages, tolerant of broken objects."""
    kind = obj.get("kind") or "<no kind>"
    raw = obj.get("metadata")
    meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    name = meta.get("name") or "<no name>"
    ns = meta.get("namespace") or ("" if kind in CLUSTER_SCOPED else "default")
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def ref(obj: Mapping[str, Any]) -> ObjectRef:
    kind = str(obj["kind"])
    ns = None if kind in CLUSTER_SCOPED else namespace_of(obj)
    return ObjectRef(kind, ns, str(obj["metadata"]["name"]))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "default")


def fail(obj: Mapping[str, Any], path: str, msg: str) -> ManifestError:
    return ManifestError(f"{where(obj)}: {path}: {msg}")


def check_metadata(obj: Mapping[str, Any]) -> None:
    """apiVersion, kind, metadata.name/namespace/labels present and well formed."""
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise fail(obj, key, "required (a non-empty string)")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise fail(obj, "metadata", "required (a mapping)")
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        raise fail(obj, "metadata.name", f"{name!r} is not a valid name (lower-case DNS name)")
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not _DNS_LABEL.match(ns) or len(ns) > 63):
        raise fail(obj, "metadata.namespace", f"{ns!r} is not a valid namespace name")
    for key in ("labels", "annotations"):
        m = meta.get(key)
        if m is None:
            continue
        if not isinstance(m, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.items()
        ):
            raise fail(obj, f"metadata.{key}", "must map strings to strings (quote numbers)")


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based selector (``matchLabels`` / Service ``selector``)."""
    return all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------- quantities


def cpu_millis(value: Any) -> int:
    """A CPU quantity (``"500m"``, ``1``, ``"0.25"``) in millicores."""
    m = _QUANTITY.match(str(value).strip())
    if not m or (m.group(2) not in (None, "m")):
        raise ValueError(f"{value!r} is not a CPU quantity (e.g. 500m, 0.5, 2)")
    try:
        n = Decimal(m.group(1))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a CPU quantity") from None
    millis = n if m.group(2) == "m" else n * 1000
    if millis < 1:
        raise ValueError(f"{value!r} is below 1m")
    return int(millis.to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(value: Any) -> int:
    """A memory quantity (``"64Mi"``, ``"1G"``, ``134217728``) in bytes."""
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) == "m":
        raise ValueError(f"{value!r} is not a memory quantity (e.g. 64Mi, 1G, 1000000)")
    try:
        n = Decimal(m.group(1)) * _MEM_SUFFIX[m.group(2) or ""]
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a memory quantity") from None
    if n < 4096:
        raise ValueError(f"{value!r} is below 4Ki")
    return int(n)


# ---------------------------------------------------------------------------- pod specs


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
    containers = tuple(_container(obj, c, f"{path}.containers[{i}]") for i, c in enumerate(raw))
    raw_init = spec.get("initContainers")
    raw_init = [] if raw_init is None else raw_init
    if not isinstance(raw_init, list):
        raise fail(obj, f"{path}.initContainers", "must be a list")
    init = tuple(_container(obj, c, f"{path}.initContainers[{i}]", init=True)
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
    return PodSpec(containers, volumes, policy, str(sa), float(grace), init)


def _container(obj: Obj, c: Any, path: str, *, init: bool = False) -> Container:
    if not isinstance(c, Mapping):
        raise fail(obj, path, "must be a mapping")
    for key in c:
        if key not in _CONTAINER_FIELDS:
            raise fail(obj, f"{path}.{key}", "not supported by this backend")
    if init and "readinessProbe" in c:
        raise fail(obj, f"{path}.readinessProbe", "must not be set for init containers")
    _security_context(obj, c.get("securityContext"), f"{path}.securityContext")
    name = c.get("name")
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
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
    return Container(name, command, args, env, ports, wd, cpu, mem, mounts, probe)


def _security_context(obj: Obj, sc: Any, path: str) -> None:
    """Checked for shape only: no backend here enforces it (the local backend runs every
    container as root with the caller's capabilities; see ``k8s_fixtures.local``)."""
    if sc is None:
        return
    if not isinstance(sc, Mapping):
        raise fail(obj, path, "must be a mapping")
    caps = sc.get("capabilities")
    if caps is None:
        return
    if not isinstance(caps, Mapping):
        raise fail(obj, f"{path}.capabilities", "must be a mapping")
    for key, v in caps.items():
        if key not in ("add", "drop"):
            raise fail(obj, f"{path}.capabilities.{key}", "not supported (add, drop)")
        _strs(obj, f"{path}.capabilities.{key}", v)


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
        not isinstance(name, str) or len(name) > 15 or not _DNS_LABEL.match(name)
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


# ---------------------------------------------------------------------------- data objects


def config_data(obj: Obj) -> dict[str, bytes]:
    """The files of a ConfigMap (``data``, ``binaryData``) or Secret (``data``, ``stringData``)."""
    out: dict[str, bytes] = {}
    secret = obj["kind"] == "Secret"
    fields = ("data", "stringData") if secret else ("data", "binaryData")
    for f in fields:
        d = obj.get(f) or {}
        if not isinstance(d, Mapping):
            raise fail(obj, f, "must be a mapping")
        for k, v in d.items():
            if not isinstance(k, str) or not re.match(r"^[-._a-zA-Z0-9]+$", k):
                raise fail(obj, f"{f}.{k}", "is not a valid key")
            if not isinstance(v, str):
                raise fail(obj, f"{f}.{k}", "must be a string")
            if (secret and f == "data") or f == "binaryData":
                try:
                    out[k] = base64.b64decode(v, validate=True)
                except binascii.Error:
                    raise fail(obj, f"{f}.{k}", "is not valid base64") from None
            else:
                out[k] = v.encode()
    return out


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def template_meta(obj: Obj, path: str = "spec.template") -> tuple[
        dict[str, str], dict[str, str], Any]:
    """(labels, annotations, spec) of a workload's pod template."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("template"), Mapping):
        raise fail(obj, path, "required (a mapping)")
    tmpl = spec["template"]
    meta = tmpl.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise fail(obj, f"{path}.metadata", "must be a mapping")
    out: list[dict[str, str]] = []
    for key in ("labels", "annotations"):
        m = meta.get(key) or {}
        if not isinstance(m, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.items()
        ):
            raise fail(obj, f"{path}.metadata.{key}", "must map strings to strings")
        out.append(dict(m))
    return out[0], out[1], tmpl.get("spec")


def match_labels(obj: Obj, path: str) -> dict[str, str]:
    """A ``{matchLabels: ...}`` selector (matchExpressions are rejected)."""
    sel = obj.get("spec", {}).get("selector")
    if sel is None:
        return {}
    if not isinstance(sel, Mapping):
        raise fail(obj, path, "must be a mapping")
    extra = [k for k in sel if k != "matchLabels"]
    if extra:
        raise fail(obj, f"{path}.{extra[0]}", "not supported (use matchLabels)")
    ml = sel.get("matchLabels") or {}
    if not isinstance(ml, Mapping):
        raise fail(obj, f"{path}.matchLabels", "must be a mapping")
    return {str(k): str(v) for k, v in ml.items()}
