"""Resource faults: a client OOM-killed by its memory limit, a client its CPU limit makes a
straggler."""

from __future__ import annotations

from k8s_fixtures import workload
from pytest_ztfl.faults.base import TARGET, Fault, override, short_join


def _oom_prepare(run: workload.FLRun) -> workload.FLRun:
    return override(run, TARGET, memory_limit=OOM_LIMIT)


OOM_LIMIT = "64Mi"  # below any Python + torch process: killed while starting, before joining


CPU_LIMIT = "100m"


def _cpu_prepare(run: workload.FLRun) -> workload.FLRun:
    return override(run, TARGET, cpu_limit=CPU_LIMIT)


FAULTS = (
    Fault(
        "client-oom",
        "resource",
        f"client 1 limited to {OOM_LIMIT} memory (OOMKilled)",
        prepare=lambda run: short_join(_oom_prepare(run)),
        unready=frozenset({f"{workload.CLIENT}-{TARGET}"}),
    ),
    Fault(
        "cpu-throttle",
        "resource",
        f"client 1 limited to {CPU_LIMIT} CPU (straggler: round deadline misses)",
        prepare=_cpu_prepare,
    ),
)
