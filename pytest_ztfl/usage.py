"""What a cell's run used: cgroup CPU and memory by pod and container, the delay line's CPU,
the machine's CPU around each round (the load a round met), from :class:`Sample` readings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k8s_fixtures.cluster import ContainerUsage
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER


@dataclass(frozen=True)
class Sample:
    """Counters read around a round: the arm's cgroups (None: no access), the delay line's
    CPU time, the machine's busy and stolen CPU time (seconds since boot)."""

    usage: dict[str, dict[str, ContainerUsage]] | None
    delayline: float | None
    machine: float
    steal: float


def round_extra(position: int, before: Sample, after: Sample) -> dict[str, Any]:
    """A round that ran at ``position`` of its round's order: its CPU by container, the TLS
    proxies' and the delay line's apart, and the machine's: what was not this arm's
    (``cpu_other_seconds``: the harness, the other arms' idle pods, any other job) is the load
    the round met."""
    extra: dict[str, Any] = {"position": position}
    machine = after.machine - before.machine
    extra["cpu_machine_seconds"] = round(machine, 6)
    extra["steal_seconds"] = round(after.steal - before.steal, 6)
    if before.usage is not None and after.usage is not None:
        per = cpu_between(before.usage, after.usage)
        extra["cpu_by_container"] = per
        total = proxy = 0.0
        for pod in per.values():
            for c, s in pod.items():
                total += s
                proxy += s if c == PROXY_CONTAINER else 0.0
        extra["cpu_seconds"] = round(total, 6)
        extra["cpu_proxy_seconds"] = round(proxy, 6)
    if before.delayline is not None and after.delayline is not None:
        extra["cpu_delayline_seconds"] = round(after.delayline - before.delayline, 6)
    if "cpu_seconds" in extra:
        own = extra["cpu_seconds"] + extra.get("cpu_delayline_seconds", 0.0)
        # clock ticks (10 ms) against cgroup nanoseconds: a small negative is rounding
        extra["cpu_other_seconds"] = round(max(machine - own, 0.0), 6)
    return extra


def resources(
    end: Sample,
    start_usage: dict[str, dict[str, ContainerUsage]] | None,
    start_delayline: float | None,
    rounds: dict[int, dict[str, Any]],
    *,
    has_delayline: bool,
) -> dict[str, Any]:
    """The cell's resources over its rounds: CPU seconds by pod and container (the TLS proxies
    apart), peak memory, the delay line's CPU. ``rounds``: the per-round extras of an arm whose
    rounds were held between (its own rounds summed), else empty (release to run end)."""
    use, dl = end.usage, end.delayline
    if use is None:
        return {"source": None, "note": "this backend gives no access to cgroups"}
    dl_s: float | None
    if rounds:
        window = "the arm's own rounds (summed between release and the next hold)"
        cpu = sum_rounds(rounds)
        dl_s = sum(x.get("cpu_delayline_seconds") or 0.0 for x in rounds.values())
    else:
        window = "from the release of round 1 to the run's end"
        cpu = cpu_between(start_usage or {}, use)
        dl_s = (dl - start_delayline) if dl is not None and start_delayline else None
    pods = {
        pod: {
            c: {
                "cpu_seconds": cpu.get(pod, {}).get(c),
                "memory_peak_bytes": u.memory_peak_bytes,
            }
            for c, u in per.items()
        }
        for pod, per in use.items()
    }
    return {
        "source": "cgroup",
        "window": window,
        "pods": pods,
        "delayline_cpu_seconds": dl_s if has_delayline else None,
    }


def cpu_between(
    a: dict[str, dict[str, ContainerUsage]], b: dict[str, dict[str, ContainerUsage]]
) -> dict[str, dict[str, float]]:
    """CPU seconds each container used from sample ``a`` to sample ``b`` (containers in both
    with a reading; a restarted container's counter starts again at its new cgroup)."""
    out: dict[str, dict[str, float]] = {}
    for pod, per in b.items():
        for c, u in per.items():
            u0 = a.get(pod, {}).get(c)
            if u.cpu_ns is None or u0 is None or u0.cpu_ns is None:
                continue
            out.setdefault(pod, {})[c] = round(max(u.cpu_ns - u0.cpu_ns, 0) / 1e9, 6)
    return out


def sum_rounds(extra: dict[int, dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for x in extra.values():
        for pod, per in x.get("cpu_by_container", {}).items():
            for c, s in per.items():
                out.setdefault(pod, {})[c] = round(out.get(pod, {}).get(c, 0.0) + s, 6)
    return out
