"""Network faults: loss bursts and a partition on one client's link (nft rules in its network
namespace, their drops counted), the delay line killed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from k8s_fixtures import workload
from k8s_fixtures.cluster import ClusterError
from pytest_ztfl.faults.base import TARGET, Action, Fault, FaultContext, guarded


def _server_ip(ctx: FaultContext) -> str:
    ip = next(p.ip for p in ctx.cluster.pods(ctx.namespace) if p.name == workload.SERVER)
    if ip is None:
        raise RuntimeError(f"{ctx.namespace}/{workload.SERVER} has no IP")
    return ip


def _in_netns(ctx: FaultContext, argv: list[str],
              script: str | None = None) -> tuple[int, str, str]:
    """Run ``argv`` in client 1's network namespace from the node (these faults are local only):
    not through the container, which in a restricted pod (SEC3) holds no NET_ADMIN."""
    cluster: Any = ctx.cluster  # the local backend's (these faults are local only): pod_info, run
    netns = cluster.pod_info(ctx.namespace, f"{workload.CLIENT}-{TARGET}").netns
    try:
        out = cluster.run(["ip", "netns", "exec", netns, *argv], input=script)
    except ClusterError as exc:
        return 1, "", str(exc)
    return 0, out, ""


def _nft(ctx: FaultContext, script: str) -> None:
    """Run an nft script inside client 1's network namespace."""
    rc, _, err = _in_netns(ctx, ["nft", "-f", "-"], script)
    if rc != 0:
        raise RuntimeError(f"nft in {ctx.namespace}/{workload.CLIENT}-{TARGET}: {err.strip()}")


def _nft_dropped(ctx: FaultContext) -> int:
    """The impairment table's ``dropped`` counter so far (0 when there is none)."""
    rc, out, _ = _in_netns(ctx, ["nft", "-j", "list", "counters", "table", "inet", "ztfl_fault"])
    if rc != 0:
        return 0
    return sum(
        int(item["counter"]["packets"])
        for item in json.loads(out).get("nftables", [])
        if item.get("counter", {}).get("name") == "dropped"
    )


def _drop_rules(server_ip: str, percent: int | None) -> str:
    """A table that drops (all, or ``percent`` % at random of) packets to/from the server,
    counting into the table's ``dropped`` counter (read as evidence by the harness, which
    does not know about this table: k8s_fixtures.local.netns_counters)."""
    cond = "" if percent is None else f"numgen random mod 100 < {percent} "
    return (
        "table inet ztfl_fault {\n"
        "  counter dropped {\n  }\n"
        "  chain out { type filter hook output priority -10; policy accept;\n"
        f'    ip daddr {server_ip} {cond}counter name "dropped" drop\n  }}\n'
        "  chain in { type filter hook input priority -10; policy accept;\n"
        f'    ip saddr {server_ip} {cond}counter name "dropped" drop\n  }}\n'
        "}\n"
    )


# Healing removes the chains and keeps the counter: what was dropped stays visible.
HEAL = "delete chain inet ztfl_fault out\ndelete chain inet ztfl_fault in\n"


def _windowed(
    kind: str,
    percent: int | None,
    bursts: int,
    seconds: float,
    gap: float = 0.0,
    every: int = 0,
    span: int = 0,
) -> Callable[[FaultContext], None]:
    """``bursts`` fault windows. Clock-driven (``every == 0``): each lasts ``seconds``, ``gap``
    s apart, from round 2. Round-driven: burst i starts with round ``2 + i * every`` and ends
    when round ``2 + i * every + span`` starts (``seconds`` at most), so every burst lands
    inside the run however fast its rounds go."""

    def inject(ctx: FaultContext) -> None:
        if not ctx.round_started(2).wait(600) or ctx.stop.is_set():
            return
        ip = _server_ip(ctx)
        for i in range(bursts):
            first = 2 + i * every
            if i and not every and ctx.stop.wait(gap):
                return
            if i and every and (not ctx.round_started(first).wait(600) or ctx.stop.is_set()):
                return
            t = time.time()
            st = ctx.cluster.pod_status(ctx.namespace, f"{workload.CLIENT}-{TARGET}")
            if not any(c.name == workload.CLIENT and c.state == "running" for c in st.containers):
                ctx.record(Action("target-gone", TARGET, t, t, {"burst": i}))
                return
            before = _nft_dropped(ctx)
            _nft(ctx, _drop_rules(ip, percent))
            try:
                # the fault's duration, not a race workaround
                (ctx.round_started(first + span) if every else ctx.stop).wait(seconds)
                dropped = _nft_dropped(ctx) - before
            finally:
                try:
                    _nft(ctx, HEAL)
                except RuntimeError:
                    if not ctx.stop.is_set():  # after the run the pod may be gone with it
                        raise
            ctx.record(
                Action(
                    kind, TARGET, t, time.time(), {"dropped_packets": dropped, "percent": percent}
                ),
            )

    return inject


PARTITION_SECONDS = 8.0


def _kill_delayline(ctx: FaultContext) -> None:
    """SIGKILL the namespace's delay line (a process this harness started) in round 2."""
    if not ctx.round_started(2).wait(600) or ctx.stop.is_set():
        return
    handle = ctx.netem.handle(ctx.namespace) if ctx.netem is not None else None
    pid = handle.status(check_rules=False).pid if handle is not None else None
    t = time.time()
    if pid is None:
        ctx.record(Action("delayline-kill", None, t, t, {"error": "no delay line"}))
        return
    os.kill(pid, signal.SIGKILL)
    ctx.record(Action("delayline-kill", None, t, time.time(), {"pid": pid}))


FAULTS = (
    Fault(
        "netem-loss",
        "netem",
        "3 bursts of 30 % packet loss between client 1 and the server, from rounds 2, 8 "
        "and 14, each over 2 rounds (2 s at most)",
        inject=guarded(_windowed("loss", 30, bursts=3, seconds=2.0, every=6, span=2)),
        local_only=True,
    ),
    Fault(
        "netem-partition",
        "netem",
        f"client 1 cut off from the server for {PARTITION_SECONDS:g} s, then healed",
        inject=guarded(
            _windowed("partition", None, bursts=1, seconds=PARTITION_SECONDS, gap=0)
        ),
        local_only=True,
    ),
    Fault(
        "delayline-kill",
        "netem",
        "the delay line is SIGKILLed during round 2",
        inject=guarded(_kill_delayline),
        local_only=True,
        requires=frozenset({"net"}),
        continues=False,
    ),
)
