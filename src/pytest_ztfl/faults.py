"""Fault scenarios: an optional matrix axis (``faults: [...]``, ``--ztfl-faults``) that injects
a real fault into a cell on purpose, so the failure taxonomy is tested against real failures.

A scenario may change the run's objects before they are applied (``prepare``: e.g. one client
with a tiny memory limit, an expired certificate) and/or act while the rounds run (``inject``,
called in a thread once the rounds are released, with the live event stream). ``expect`` names
the failure class the harness must report. Scenarios only use the backend-neutral Cluster API
plus, where unavoidable, the local backend's extras (say so in ``local_only``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from k8s_fixtures import workload


@dataclass(frozen=True)
class FaultContext:
    """What an injector may use while the run goes."""

    cluster: Any
    namespace: str
    run: workload.FLRun
    round_started: Callable[[int], threading.Event]  # event set when round N starts
    stop: threading.Event  # set when the run is over: injectors must return promptly


@dataclass(frozen=True)
class Fault:
    name: str
    expect: str  # the failure class the harness must report for the affected client(s)
    describe: str
    prepare: Callable[[workload.FLRun], workload.FLRun] = lambda run: run
    inject: Callable[[FaultContext], None] | None = None
    local_only: bool = False


def _kill_client(ctx: FaultContext) -> None:
    """SIGKILL client 1's main process while round 2 is in flight."""
    if not ctx.round_started(2).wait(600) or ctx.stop.is_set():
        return
    ctx.cluster.signal(ctx.namespace, "fl-client-1", "fl-client", signal.SIGKILL)


def _oom_client(run: workload.FLRun) -> workload.FLRun:
    over = dict(run.overrides)
    over[1] = replace(over.get(1, workload.ClientOverride()), memory_limit="64Mi")
    return replace(run, overrides=over)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("client-kill", "workload", "client 1 SIGKILLed during round 2", inject=_kill_client),
        Fault(
            "client-oom",
            "resource",
            "client 1 limited to 64Mi memory (OOMKilled)",
            prepare=_oom_client,
        ),
    )
}


def get(name: str | None) -> Fault | None:
    if name is None:
        return None
    if name not in FAULTS:
        raise ValueError(f"fault {name!r}: unknown (known: {', '.join(sorted(FAULTS))})")
    return FAULTS[name]
