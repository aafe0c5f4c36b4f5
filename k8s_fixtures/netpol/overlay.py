"""NetworkPolicy as an overlay of the local backend: validate objects, sync nftables on change.

:class:`NetpolOverlay` has the shape the local backend's overlay hook expects (``kinds``,
``validate(obj)``, ``sync(cluster, view)``, ``close(cluster)``) without importing the backend:
the view and the cluster are described here structurally (:class:`LocalViewLike`,
:class:`CommandRunnerLike`), so either side can change its internals freely. Each sync turns the
backend's view into a :class:`~k8s_fixtures.netpol.model.ClusterView` with
:func:`view_from_local`, compiles, and re-applies only the pod namespaces whose ruleset changed,
running ``ip netns exec NS nft -f -`` through ``cluster.run`` (which knows how to reach the
namespaces, rootless included). :meth:`NetpolOverlay.metadata` is what a run records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from k8s_fixtures.netpol.lint import lint
from k8s_fixtures.netpol.model import PROTOCOLS, ClusterView, ContainerPort, Namespace, Pod
from k8s_fixtures.netpol.nft import (
    DEFAULT_DENY_ACTION,
    DenyAction,
    Enforcer,
    NftError,
    Runner,
    SyncReport,
)
from k8s_fixtures.netpol.parse import parse_documents, parse_policy

KIND = "NetworkPolicy"


class PortLike(Protocol):
    @property
    def port(self) -> int: ...
    @property
    def protocol(self) -> str: ...
    @property
    def name(self) -> str | None: ...


class PodLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def ip(self) -> str: ...
    @property
    def netns(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def ports(self) -> Sequence[PortLike]: ...


class LocalViewLike(Protocol):
    @property
    def gateway(self) -> str: ...
    @property
    def namespaces(self) -> Mapping[str, Mapping[str, str]]: ...
    @property
    def pods(self) -> Sequence[PodLike]: ...
    @property
    def objects(self) -> Mapping[str, Sequence[Mapping[str, Any]]]: ...


class CommandRunnerLike(Protocol):
    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 30) -> str: ...


def view_from_local(view: LocalViewLike) -> ClusterView:
    """The backend's view (pods, namespaces, stored NetworkPolicy objects) as a ClusterView."""
    pods = tuple(
        Pod(p.namespace, p.name, p.ip, dict(p.labels),
            tuple(ContainerPort(cp.name, cp.port, cp.protocol)
                  for cp in p.ports if cp.protocol in PROTOCOLS),
            p.netns)
        for p in view.pods)
    namespaces = tuple(Namespace(name, dict(labels)) for name, labels in view.namespaces.items())
    policies = parse_documents(view.objects.get(KIND, ()))
    return ClusterView(namespaces, pods, tuple(policies), (view.gateway,))


def cluster_runner(cluster: CommandRunnerLike) -> Runner:
    """An nft runner that goes through ``cluster.run`` (errors become :class:`NftError`)."""
    def run(netns: str, script: str) -> None:
        try:
            cluster.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise NftError(f"nft in netns {netns}: {first}") from e
    return run


class NetpolOverlay:
    """The local backend's NetworkPolicy overlay (SEC1/SEC3)."""

    kinds: Collection[str] = frozenset({KIND})

    def __init__(self, deny_action: DenyAction = DEFAULT_DENY_ACTION) -> None:
        self.enforcer = Enforcer(deny_action)
        self.warnings: list[str] = []
        self.last_report: SyncReport | None = None

    def validate(self, obj: Mapping[str, Any]) -> None:
        """Raise :class:`~k8s_fixtures.netpol.parse.PolicyError` (one line) for a bad object."""
        parse_policy(obj)

    def sync(self, cluster: CommandRunnerLike, view: LocalViewLike) -> None:
        cv = view_from_local(view)
        self.enforcer.runner = cluster_runner(cluster)
        self.last_report = self.enforcer.sync(cv)
        self.warnings = lint(cv) if cv.policies else []

    def close(self, cluster: CommandRunnerLike) -> None:
        """Tables live in pod namespaces and go with them; remove any that remain."""
        self.enforcer.runner = cluster_runner(cluster)
        with contextlib.suppress(NftError):
            self.enforcer.remove_all()

    def metadata(self) -> dict[str, str]:
        return self.enforcer.metadata()
