"""Requests and limits of the FL containers in a matrix (``workload.resources``): parsed as
Kubernetes quantities, each bad value one error naming its field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k8s_fixtures.manifests import cpu_millis, memory_bytes
from pytest_ztfl.matrix.errors import MatrixError

RESOURCE_ROLES = ("server", "client")
RESOURCE_KINDS = ("requests", "limits")
_QUANTITY_OF = {"cpu": cpu_millis, "memory": memory_bytes}  # each raises ValueError when bad


@dataclass(frozen=True)
class Quantities:
    """CPU and memory as Kubernetes quantities (``500m``, ``1``; ``512Mi``, ``1G``)."""

    cpu: str | None = None
    memory: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}


@dataclass(frozen=True)
class ContainerResources:
    """``resources`` of one role's FL container: requests and limits, as Kubernetes has them."""

    requests: Quantities = Quantities()
    limits: Quantities = Quantities()

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The Kubernetes form (``{requests: {cpu: ..}, limits: {..}}``), only what is set."""
        out = {"requests": self.requests.to_dict(), "limits": self.limits.to_dict()}
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class Resources:
    """``workload.resources``: requests and limits of the server's and of every client's FL
    container. Unset (the default) leaves the pods BestEffort, as they always were."""

    server: ContainerResources = ContainerResources()
    client: ContainerResources = ContainerResources()

    def __bool__(self) -> bool:
        return bool(self.to_dict())

    def to_dict(self) -> dict[str, dict[str, dict[str, str]]]:
        out = {"server": self.server.to_dict(), "client": self.client.to_dict()}
        return {k: v for k, v in out.items() if v}


def _mapping(source: str, value: Any, path: str, known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(f"{source}: field '{path}' must be a mapping ({', '.join(known)})")
    unknown = sorted(set(map(str, value)) - set(known))
    if unknown:
        raise MatrixError(
            f"{source}: unknown field '{path}.{unknown[0]}' (known: {', '.join(known)})"
        )
    return value


def _quantity(source: str, value: Any, path: str, name: str) -> str:
    """``value`` as the quantity string written into the pod spec (numbers as YAML gave them)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MatrixError(f"{source}: {path}={value!r}: expected a quantity (e.g. "
                          f"{'500m or 2' if name == 'cpu' else '512Mi or 1G'})")
    text = str(value)
    try:
        _QUANTITY_OF[name](text)
    except ValueError as exc:
        why = str(exc).removeprefix(f"{text!r} is ").removeprefix(f"{text!r} ")
        raise MatrixError(f"{source}: {path}={value!r}: {why}") from None
    return text


def parse_resources(source: str, raw: Any) -> Resources:
    """``workload.resources`` from its YAML form, every field checked; one line naming the
    field when a value is bad (``workload.resources.client.limits.cpu='abc': not a CPU
    quantity ...``) or a request exceeds its limit (which Kubernetes refuses)."""
    roles = _mapping(source, raw, "workload.resources", RESOURCE_ROLES)
    parsed: dict[str, ContainerResources] = {}
    for role, role_raw in roles.items():
        base = f"workload.resources.{role}"
        kinds = _mapping(source, role_raw, base, RESOURCE_KINDS)
        q: dict[str, Quantities] = {}
        for kind, kind_raw in kinds.items():
            values = _mapping(source, kind_raw, f"{base}.{kind}", tuple(_QUANTITY_OF))
            q[kind] = Quantities(**{n: _quantity(source, v, f"{base}.{kind}.{n}", n)
                                    for n, v in values.items()})
        res = ContainerResources(**q)
        for name, amount in _QUANTITY_OF.items():
            req, lim = getattr(res.requests, name), getattr(res.limits, name)
            if req is not None and lim is not None and amount(req) > amount(lim):
                raise MatrixError(
                    f"{source}: {base}.requests.{name}={req!r}: more than "
                    f"limits.{name}={lim!r} (Kubernetes requires requests <= limits)"
                )
        parsed[role] = res
    return Resources(**parsed)
