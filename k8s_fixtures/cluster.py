"""The backend-neutral cluster interface: what the harness may ask of any cluster.

The local backend (network namespaces), and later kind and real clusters (the official
``kubernetes`` client), all implement :class:`Cluster`. Everything here speaks Kubernetes
objects (plain dicts, as ``kubectl apply`` would read them) and Kubernetes vocabulary (pod
phase, container exit code, termination reason), so a test written against one backend runs
unchanged on another.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

Obj = dict[str, Any]
"""One Kubernetes object as a plain dict (``apiVersion``, ``kind``, ``metadata``, ...)."""

Objects = Obj | Iterable[Obj] | str | Path
"""What :meth:`Cluster.apply` accepts: one object, several, or a (multi-document) YAML file."""

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


class ClusterError(RuntimeError):
    """A cluster operation failed. The message is one line naming the object and the cause."""


class ManifestError(ClusterError):
    """An object is malformed or unsupported: ``Kind ns/name: field.path: what is wrong``."""


class PrivilegeError(ClusterError):
    """This machine/user cannot run the backend; the message says what is missing."""


class ReadyTimeout(ClusterError):
    """Pods did not become ready (or finish) in time; the message lists them and their state."""


@dataclass(frozen=True)
class ObjectRef:
    """The identity of an applied object."""

    kind: str
    namespace: str | None  # None for cluster-scoped kinds (Namespace)
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else (
            f"{self.kind} {self.name}"
        )


@dataclass(frozen=True)
class ContainerStatus:
    """One container of a pod, as ``kubectl get pod -o yaml`` would report it."""

    name: str
    state: Literal["waiting", "running", "terminated"]
    ready: bool
    restart_count: int = 0
    exit_code: int | None = None  # of the current (terminated) or last termination
    reason: str | None = None  # e.g. "Completed", "Error", "OOMKilled", "StartError"
    message: str | None = None
    waiting_reason: str | None = None  # while waiting: "ContainerCreating", "CrashLoopBackOff"


@dataclass(frozen=True)
class PodStatus:
    """The observable state of one pod."""

    namespace: str
    name: str
    phase: PodPhase
    ip: str | None
    ready: bool
    containers: tuple[ContainerStatus, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    init_containers: tuple[ContainerStatus, ...] = ()  # ``initContainerStatuses``, in order

    def _first_terminated(self) -> ContainerStatus | None:
        # A failed init container counts (the regular containers then never ran); a
        # successful one does not, so a running pod has no exit code yet.
        failed_init = [c for c in self.init_containers
                       if c.exit_code is not None and c.exit_code != 0]
        done = [c for c in self.containers if c.exit_code is not None]
        failed = failed_init + [c for c in done if c.exit_code != 0]
        first = failed or done
        return first[0] if first else None

    @property
    def exit_code(self) -> int | None:
        """Exit code of the (first failed, init containers first, else first) terminated
        container, if any."""
        c = self._first_terminated()
        return c.exit_code if c else None

    @property
    def reason(self) -> str | None:
        """Termination reason of that container, e.g. ``OOMKilled``."""
        c = self._first_terminated()
        return c.reason if c else None

    @property
    def restart_count(self) -> int:
        return sum(c.restart_count for c in (*self.init_containers, *self.containers))

    @property
    def display(self) -> str:
        """What ``kubectl get pod`` shows as STATUS (approximately): ``Init:Error``,
        ``Init:1/2``, ``Init:CrashLoopBackOff``, ``PodInitializing``, ``OOMKilled``,
        ``Completed``, ``CrashLoopBackOff``, ``Running`` ..."""
        n = len(self.init_containers)
        for i, c in enumerate(self.init_containers):
            if c.state == "terminated" and c.exit_code == 0:
                continue
            if c.state == "terminated":
                return f"Init:{c.reason or f'ExitCode:{c.exit_code}'}"
            if c.waiting_reason and c.waiting_reason != "PodInitializing" and (
                    c.restart_count or c.exit_code is not None):
                return f"Init:{c.waiting_reason}"
            return f"Init:{i}/{n}"
        if self.phase in ("Succeeded", "Failed"):
            return self.reason or self.phase
        for c in self.containers:
            if c.state == "waiting" and c.waiting_reason:
                return c.waiting_reason
        return self.phase


@dataclass(frozen=True)
class ExecResult:
    """What :meth:`Cluster.exec` returns."""

    rc: int
    out: str
    err: str

    def __iter__(self) -> Iterator[Any]:  # allows ``rc, out, err = cluster.exec(...)``
        return iter((self.rc, self.out, self.err))


@dataclass(frozen=True)
class ContainerUsage:
    """One container's resource use so far, from its cgroup: CPU time, the most memory it
    has held at once, and the time its CPU limit held it back (None: this backend or kernel
    cannot tell)."""

    cpu_ns: int | None
    memory_peak_bytes: int | None
    throttled_ns: int | None = None


@dataclass(frozen=True)
class NetnsCounters:
    """Counters of one pod's network namespace so far: packets its NetworkPolicy refused
    (the deny rules' counters, by direction), TCP segments retransmitted and retransmission
    timeouts (the kernel's ``RetransSegs``, ``TCPTimeouts``), and packets dropped by nft rules
    that are not its policy (``dropped_other``: an emulated link's impairment)."""

    denied_ingress: int
    denied_egress: int
    tcp_retrans: int
    tcp_timeouts: int
    dropped_other: int

    def __sub__(self, other: NetnsCounters) -> NetnsCounters:
        return NetnsCounters(*(a - b for a, b in zip(self.values(), other.values(),
                                                      strict=True)))

    def __add__(self, other: NetnsCounters) -> NetnsCounters:
        return NetnsCounters(*(a + b for a, b in zip(self.values(), other.values(),
                                                      strict=True)))

    def values(self) -> tuple[int, int, int, int, int]:
        return (self.denied_ingress, self.denied_egress, self.tcp_retrans, self.tcp_timeouts,
                self.dropped_other)


@runtime_checkable
class ReadsNetnsCounters(Protocol):
    """A backend that can read its pods' network namespaces (the local backend)."""

    def netns_counters(self, namespace: str) -> dict[str, NetnsCounters]:
        """pod -> counters so far, for every pod of ``namespace`` with a network namespace."""
        ...


@runtime_checkable
class MeasuresUsage(Protocol):
    """A backend that can read its pods' cgroups (the local backend; on kind/kube the
    harness has no access to the nodes' cgroups)."""

    def usage(self, namespace: str) -> dict[str, dict[str, ContainerUsage]]:
        """pod -> container -> usage, for every running or finished pod of ``namespace``."""
        ...


@runtime_checkable
class CreatesFiles(Protocol):
    """A backend that can create an empty file in a container's writable volume from outside
    (the local backend: volumes are the machine's directories), faster than an exec of
    ``touch`` (the harness releases every held round this way)."""

    def touch(self, namespace: str, pod: str, container: str, path: str) -> bool:
        """Create ``path`` as the container sees it; False: not in a writable volume."""
        ...


@runtime_checkable
class Cluster(Protocol):
    """What every backend provides. Methods block until the backend has acted."""

    name: str

    def apply(self, objects: Objects) -> list[ObjectRef]:
        """Create (or leave unchanged) the given objects; all-or-nothing on bad input."""
        ...

    def delete(
        self, objects: Objects | None = None, *, namespace: str | None = None
    ) -> None:
        """Delete the given objects, or a whole namespace and everything in it."""
        ...

    def wait_ready(
        self,
        namespace: str,
        *,
        names: Iterable[str] | None = None,
        selector: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> list[PodStatus]:
        """Block until the selected pods (all in ``namespace`` by default) are Ready."""
        ...

    def wait_finished(self, namespace: str, pod: str, *, timeout: float = 60.0) -> PodStatus:
        """Block until the pod's phase is Succeeded or Failed."""
        ...

    def pods(
        self, namespace: str, *, selector: Mapping[str, str] | None = None
    ) -> list[PodStatus]:
        """Status of the pods in ``namespace`` matching the label selector."""
        ...

    def pod_status(self, namespace: str, pod: str) -> PodStatus:
        """Status of one pod; raises :class:`ClusterError` if it does not exist."""
        ...

    def logs(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[str]:
        """The container's output (stdout and stderr interleaved) line by line; with
        ``follow`` keep yielding until the container terminates (or ``timeout``)."""
        ...

    def exec(
        self,
        namespace: str,
        pod: str,
        argv: list[str],
        *,
        container: str | None = None,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` inside the pod (its network, mounts, environment)."""
        ...

    def signal(self, namespace: str, pod: str, container: str, sig: int) -> None:
        """Send ``sig`` to the container's main process (PID 1 of the container), the way
        ``kubectl exec POD -c CONTAINER -- kill -SIG 1`` would; raises :class:`ClusterError`
        if the container is not running. What happens next follows the pod's restartPolicy."""
        ...

    def teardown(self) -> None:
        """Remove everything the cluster created. Idempotent."""
        ...
