"""The parts every fault scenario is made of: the scenario (:class:`Fault`), what its injector
may use while the run goes (:class:`FaultContext`, with the run's :class:`ActionLog`), the
actions it records, and the rewrites scenarios share (flags, per-client overrides, the rendered
objects' pods and policies)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from k8s_fixtures import workload
from k8s_fixtures.cluster import Cluster

if TYPE_CHECKING:
    from k8s_fixtures.netem.local_overlay import NetemOverlay
    from k8s_fixtures.tls.ca import CertificateAuthority
    from pytest_ztfl.matrix import Cell

Obj = dict[str, Any]
TARGET = 1  # the client most scenarios hit
FAULT_LABEL = "ztfl.io/fault"  # set on the pod a scenario targets (objects hook)
JOIN_TIMEOUT = 15.0  # seconds the server waits for a client that never comes (was 300)


@dataclass(frozen=True)
class Action:
    """One thing an injector did, with its wall-clock window (end == start for an instant)."""

    kind: str  # sigkill, partition, loss, delayline-kill, hostile, error
    client: int | None
    start: float
    end: float
    detail: dict[str, Any] = field(default_factory=dict)

    def covers(self, wall: float, slack: float = 0.0) -> bool:
        return self.start - slack <= wall <= self.end + slack


class ActionLog:
    """The actions of one run's injector (thread-safe: the injector runs in a thread of its
    own while the harness reads)."""

    def __init__(self) -> None:
        self._actions: list[Action] = []
        self._lock = threading.Lock()

    def record(self, action: Action) -> None:
        with self._lock:
            self._actions.append(action)

    def all(self) -> list[Action]:
        with self._lock:
            return list(self._actions)


@dataclass(frozen=True)
class FaultContext:
    """What an injector may use while the run goes."""

    cluster: Cluster
    netem: NetemOverlay | None  # the local backend's delay lines (None: no such thing here)
    namespace: str
    run: workload.FLRun
    round_started: Callable[[int], threading.Event]  # event set when round N starts
    stop: threading.Event  # set when the run is over: injectors must return promptly
    log: ActionLog = field(default_factory=ActionLog)

    def record(self, action: Action) -> None:
        self.log.record(action)


ObjectsHook = Callable[[list[Obj], workload.FLRun, "CertificateAuthority | None"], list[Obj]]


@dataclass(frozen=True)
class Fault:
    name: str
    expect: str  # the failure class the harness must report for the affected client(s)
    describe: str
    prepare: Callable[[workload.FLRun], workload.FLRun] = lambda run: run
    inject: Callable[[FaultContext], None] | None = None
    objects: ObjectsHook | None = None  # rewrite the rendered objects (runner: faults.render)
    requires: frozenset[str] = frozenset()  # "tls" (native mTLS), "netpol", "net"
    local_only: bool = False
    continues: bool = True  # the run must go on with the remaining clients
    unready: frozenset[str] = frozenset()  # pods that fail on purpose: not waited for

    def unsupported(self, cell: Cell) -> str | None:
        """Why this scenario cannot run in ``cell`` (None: it can)."""
        if self.name != "malformed-update" and cell.workload.clients <= TARGET:
            return f"fault {self.name} hits fl-client-{TARGET}: needs at least {TARGET + 1} clients"
        if "tls" in self.requires and not (cell.tls and cell.mtls == "native"):
            return f"fault {self.name} needs SEC2/SEC3 with native mTLS"
        if "netpol" in self.requires and not cell.netpol:
            return f"fault {self.name} needs SEC1/SEC3 (NetworkPolicy)"
        if "net" in self.requires and not cell.shaped:
            return f"fault {self.name} needs a network profile (NET1..)"
        return None


def guarded(inject: Callable[[FaultContext], None]) -> Callable[[FaultContext], None]:
    """An injector's error is recorded as an action (and so visible), never lost in a thread."""

    def run(ctx: FaultContext) -> None:
        try:
            inject(ctx)
        except Exception as exc:  # recorded: the row then names the injector as broken
            t = time.time()
            ctx.record(Action("error", None, t, t, {"error": repr(exc)}))

    return run


def set_flag(flags: Sequence[str], flag: str, value: str) -> tuple[str, ...]:
    out = list(flags)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return tuple(out)


def flag(flags: Sequence[str], flag: str) -> str | None:
    return flags[flags.index(flag) + 1] if flag in flags else None


def short_join(run: workload.FLRun, seconds: float = JOIN_TIMEOUT) -> workload.FLRun:
    """The server stops waiting for a client that never comes after ``seconds`` (it waits as
    long again for the harness's release file, so proofs get 2 x ``seconds``)."""
    return replace(run, server_flags=set_flag(run.server_flags, "--join-timeout", f"{seconds:g}"))


def override(run: workload.FLRun, client: int, **changes: Any) -> workload.FLRun:
    over = dict(run.overrides)
    over[client] = replace(over.get(client, workload.ClientOverride()), **changes)
    return replace(run, overrides=over)


def pod_obj(objs: list[Obj], name: str) -> Obj:
    for o in objs:
        if o.get("kind") == "Pod" and o["metadata"]["name"] == name:
            return o
    raise ValueError(f"no Pod {name} among the rendered objects")


def policy(objs: list[Obj], name: str) -> Obj:
    for o in objs:
        if o.get("kind") == "NetworkPolicy" and o["metadata"]["name"] == name:
            return o
    raise ValueError(f"no NetworkPolicy {name} among the rendered objects (is netpol on?)")


def mark_target(objs: list[Obj], client: int = TARGET) -> None:
    pod = pod_obj(objs, f"{workload.CLIENT}-{client}")
    pod["metadata"].setdefault("labels", {})[FAULT_LABEL] = "target"


_NOT_TARGET = {"key": FAULT_LABEL, "operator": "DoesNotExist"}


def exclude_target(selector: dict[str, Any]) -> None:
    selector.setdefault("matchExpressions", []).append(dict(_NOT_TARGET))
