"""Parse ``networking.k8s.io/v1`` NetworkPolicy objects from plain dicts (or YAML files).

Validation follows the API server's: unknown or unsupported fields, bad CIDRs, ``except``
outside its ``cidr``, ``endPort`` without a numeric ``port``, a peer with nothing in it or an
``ipBlock`` mixed with selectors, bad selector operators. Every problem raises
:class:`PolicyError` whose message is one line naming the policy (``ns/name``) and the field
path, e.g. ``NetworkPolicy x/web: spec.ingress[0].from[1].ipBlock.cidr: invalid CIDR '10.0/33'``.

Defaulting follows the API server's ``SetDefaults_NetworkPolicy``: an absent (or empty)
``policyTypes`` becomes ``[Ingress]``, plus ``Egress`` only when ``egress`` is non-empty
(``len(spec.egress) != 0``; ``egress: []`` does not count); a port's absent ``protocol`` is TCP;
an absent ``spec.podSelector`` is the empty selector.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from k8s_fixtures.netpol.model import (
    PROTOCOLS,
    Direction,
    IPBlock,
    IPNetwork,
    LabelSelector,
    NetworkPolicy,
    Operator,
    Peer,
    PolicyPort,
    Protocol,
    Requirement,
    Rule,
)

API_VERSION = "networking.k8s.io/v1"
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class PolicyError(ValueError):
    """A malformed or unsupported policy; the message names the object and the field path."""


class _Ctx:
    def __init__(self, key: str) -> None:
        self.key = key

    def fail(self, path: str, msg: str) -> PolicyError:
        return PolicyError(f"NetworkPolicy {self.key}: {path}: {msg}")


def _mapping(ctx: _Ctx, path: str, value: object, allowed: Iterable[str] | None
             ) -> Mapping[str, Any]:
    """``value`` as a mapping whose keys are all in ``allowed`` (None: any key)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ctx.fail(path, f"expected a mapping, got {type(value).__name__}")
    if allowed is not None:
        ok = set(allowed)
        for k in value:
            if k not in ok:
                raise ctx.fail(f"{path}.{k}",
                               f"unsupported field (allowed: {', '.join(sorted(ok))})")
    return cast(Mapping[str, Any], value)


def _list(ctx: _Ctx, path: str, value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(path, f"expected a list, got {type(value).__name__}")
    return value


def _str(ctx: _Ctx, path: str, value: object) -> str:
    if not isinstance(value, str):
        raise ctx.fail(path, f"expected a string, got {value!r}")
    return value


def parse_selector(ctx: _Ctx, path: str, value: object) -> LabelSelector:
    m = _mapping(ctx, path, value, ("matchLabels", "matchExpressions"))
    labels_raw = _mapping(ctx, f"{path}.matchLabels", m.get("matchLabels"), None)
    labels = tuple(
        sorted((_str(ctx, f"{path}.matchLabels", k), _str(ctx, f"{path}.matchLabels.{k}", v))
               for k, v in labels_raw.items())
    )
    reqs: list[Requirement] = []
    for i, e in enumerate(_list(ctx, f"{path}.matchExpressions", m.get("matchExpressions"))):
        p = f"{path}.matchExpressions[{i}]"
        em = _mapping(ctx, p, e, ("key", "operator", "values"))
        key = _str(ctx, f"{p}.key", em.get("key"))
        op_raw = _str(ctx, f"{p}.operator", em.get("operator"))
        try:
            op = Operator(op_raw)
        except ValueError:
            raise ctx.fail(f"{p}.operator",
                           f"unsupported operator {op_raw!r} (In, NotIn, Exists, DoesNotExist)"
                           ) from None
        values = tuple(_str(ctx, f"{p}.values[{j}]", v)
                       for j, v in enumerate(_list(ctx, f"{p}.values", em.get("values"))))
        if op in (Operator.IN, Operator.NOT_IN) and not values:
            raise ctx.fail(f"{p}.values", f"must be non-empty for operator {op.value}")
        if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
            raise ctx.fail(f"{p}.values", f"must be empty for operator {op.value}")
        reqs.append(Requirement(key, op, values))
    return LabelSelector(labels, tuple(reqs))


def _network(ctx: _Ctx, path: str, value: object) -> IPNetwork:
    text = _str(ctx, path, value)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ctx.fail(path, f"invalid CIDR {text!r}") from None


def _ip_block(ctx: _Ctx, path: str, value: object) -> IPBlock:
    m = _mapping(ctx, path, value, ("cidr", "except"))
    if "cidr" not in m:
        raise ctx.fail(f"{path}.cidr", "required")
    cidr = _network(ctx, f"{path}.cidr", m["cidr"])
    excepts: list[IPNetwork] = []
    for i, e in enumerate(_list(ctx, f"{path}.except", m.get("except"))):
        p = f"{path}.except[{i}]"
        net = _network(ctx, p, e)
        if net.version != cidr.version or not net.subnet_of(cidr) or net == cidr:  # type: ignore[arg-type]
            raise ctx.fail(p, f"{net} must be a strict subset of cidr {cidr}")
        excepts.append(net)
    return IPBlock(cidr, tuple(excepts))


def _peer(ctx: _Ctx, path: str, value: object) -> Peer:
    m = _mapping(ctx, path, value, ("podSelector", "namespaceSelector", "ipBlock"))
    if not m:
        raise ctx.fail(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    if "ipBlock" in m and len(m) > 1:
        raise ctx.fail(path, "ipBlock may not be combined with podSelector/namespaceSelector")
    if "ipBlock" in m:
        return Peer(ip_block=_ip_block(ctx, f"{path}.ipBlock", m["ipBlock"]))
    return Peer(
        pod_selector=parse_selector(ctx, f"{path}.podSelector", m["podSelector"])
        if "podSelector" in m else None,
        namespace_selector=parse_selector(ctx, f"{path}.namespaceSelector", m["namespaceSelector"])
        if "namespaceSelector" in m else None,
    )


def _port(ctx: _Ctx, path: str, value: object) -> PolicyPort:
    m = _mapping(ctx, path, value, ("protocol", "port", "endPort"))
    proto_raw = m.get("protocol", "TCP")
    if proto_raw not in PROTOCOLS:
        raise ctx.fail(f"{path}.protocol", f"unsupported protocol {proto_raw!r} (TCP, UDP, SCTP)")
    protocol = cast(Protocol, proto_raw)
    port = m.get("port")
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int | str):
            raise ctx.fail(f"{path}.port", f"expected a number or a port name, got {port!r}")
        if isinstance(port, int) and not 1 <= port <= 65535:
            raise ctx.fail(f"{path}.port", f"{port} is not a valid port number (1-65535)")
        if isinstance(port, str) and (
            len(port) > 15 or not _PORT_NAME.match(port) or not re.search("[a-z]", port)
            or "--" in port
        ):
            raise ctx.fail(f"{path}.port", f"{port!r} is not a valid port name (IANA_SVC_NAME)")
    end = m.get("endPort")
    if end is not None:
        if isinstance(end, bool) or not isinstance(end, int):
            raise ctx.fail(f"{path}.endPort", f"expected a number, got {end!r}")
        if not isinstance(port, int):
            raise ctx.fail(f"{path}.endPort", "requires a numeric port")
        if not port <= end <= 65535:
            raise ctx.fail(f"{path}.endPort", f"{end} must be >= port {port} and <= 65535")
    return PolicyPort(protocol, port, end)


def _rules(ctx: _Ctx, path: str, value: object, peers_key: str) -> tuple[Rule, ...]:
    rules = []
    for i, r in enumerate(_list(ctx, path, value)):
        p = f"{path}[{i}]"
        m = _mapping(ctx, p, r, (peers_key, "ports"))
        peers = tuple(_peer(ctx, f"{p}.{peers_key}[{j}]", x)
                      for j, x in enumerate(_list(ctx, f"{p}.{peers_key}", m.get(peers_key))))
        ports = tuple(_port(ctx, f"{p}.ports[{j}]", x)
                      for j, x in enumerate(_list(ctx, f"{p}.ports", m.get("ports"))))
        rules.append(Rule(peers, ports))
    return tuple(rules)


def parse_policy(obj: Mapping[str, Any], default_namespace: str = "default") -> NetworkPolicy:
    """One NetworkPolicy dict -> :class:`NetworkPolicy`; raises :class:`PolicyError`."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name")
    ns = meta.get("namespace") or default_namespace
    ctx = _Ctx(f"{ns}/{name if isinstance(name, str) else '?'}")
    if not isinstance(obj, Mapping):
        raise ctx.fail("<object>", f"expected a mapping, got {type(obj).__name__}")
    if obj.get("apiVersion") != API_VERSION:
        raise ctx.fail("apiVersion", f"expected {API_VERSION!r}, got {obj.get('apiVersion')!r}")
    if obj.get("kind") != "NetworkPolicy":
        raise ctx.fail("kind", f"expected 'NetworkPolicy', got {obj.get('kind')!r}")
    _mapping(ctx, "<object>", obj, ("apiVersion", "kind", "metadata", "spec", "status"))
    if not isinstance(name, str) or not name:
        raise ctx.fail("metadata.name", "required")
    if not _DNS1123_SUBDOMAIN.match(name):
        raise ctx.fail("metadata.name", f"{name!r} is not a DNS-1123 subdomain")
    if not isinstance(ns, str) or not _DNS1123_LABEL.match(ns):
        raise ctx.fail("metadata.namespace", f"{ns!r} is not a DNS-1123 label")
    spec = _mapping(ctx, "spec", obj.get("spec"),
                    ("podSelector", "policyTypes", "ingress", "egress"))
    pod_selector = parse_selector(ctx, "spec.podSelector", spec.get("podSelector"))
    ingress = _rules(ctx, "spec.ingress", spec.get("ingress"), "from")
    egress = _rules(ctx, "spec.egress", spec.get("egress"), "to")
    types_raw = _list(ctx, "spec.policyTypes", spec.get("policyTypes"))
    types: set[Direction] = set()
    for i, t in enumerate(types_raw):
        try:
            types.add(Direction(t))
        except ValueError:
            raise ctx.fail(f"spec.policyTypes[{i}]",
                           f"unsupported value {t!r} (Ingress, Egress)") from None
    if not types:  # SetDefaults_NetworkPolicy: len(policyTypes) == 0
        types = {Direction.INGRESS}
        if egress:
            types.add(Direction.EGRESS)
    return NetworkPolicy(ns, name, pod_selector, frozenset(types), ingress, egress)


def parse_documents(docs: Iterable[object], default_namespace: str = "default"
                    ) -> list[NetworkPolicy]:
    """Parse many objects; ``kind: List`` / ``NetworkPolicyList`` are flattened, None skipped."""
    out: list[NetworkPolicy] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, Mapping) and doc.get("kind") in ("List", "NetworkPolicyList"):
            out.extend(parse_documents(_list(_Ctx("<list>"), "items", doc.get("items")),
                                       default_namespace))
            continue
        if not isinstance(doc, Mapping):
            raise PolicyError(f"NetworkPolicy ?: <document>: expected a mapping, got {doc!r}")
        out.append(parse_policy(doc, default_namespace))
    return out


def load_policies(path: str | Path, default_namespace: str = "default") -> list[NetworkPolicy]:
    """Policies from a YAML file (multi-document) or every ``*.yaml``/``*.yml`` in a directory."""
    p = Path(path)
    files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
    out: list[NetworkPolicy] = []
    for f in files:
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except yaml.YAMLError as e:
            raise PolicyError(f"{f}: not valid YAML: {str(e).splitlines()[0]}") from None
        try:
            out.extend(parse_documents(docs, default_namespace))
        except PolicyError as e:
            raise PolicyError(f"{f}: {e}") from None
    return out


def load_policy_text(text: str, default_namespace: str = "default") -> list[NetworkPolicy]:
    """Policies from YAML text (multi-document)."""
    return parse_documents(yaml.safe_load_all(text), default_namespace)
