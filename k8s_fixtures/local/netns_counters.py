"""Read a pod network namespace's counters as evidence: what its NetworkPolicy refused, what
TCP had to retransmit, what an emulated link's impairment dropped.

One command per pod (``ip netns exec NS sh -c ...``) prints ``/proc/net/snmp``,
``/proc/net/netstat`` (both per network namespace) and ``nft -j list ruleset``; :func:`parse`
turns that into a :class:`~k8s_fixtures.cluster.NetnsCounters`. In the ruleset, the
``ztfl_netpol`` table's named counters ``denied_ingress``/``denied_egress`` are the policy's
refusals (:mod:`k8s_fixtures.netpol.nft`); in any other table, a counter on a rule whose verdict
is ``drop``, or a named counter called ``dropped`` (which outlives the rules of an impairment
that has healed), counts into ``dropped_other``.
"""

from __future__ import annotations

import json
from typing import Any

from k8s_fixtures.cluster import NetnsCounters

__all__ = ["SCRIPT", "SEPARATOR", "NetnsCounters", "parse"]
from k8s_fixtures.netpol.nft import TABLE as NETPOL_TABLE
from k8s_fixtures.netpol.nft import denied

SEPARATOR = "@@ztfl-nft@@"
SCRIPT = (f"cat /proc/net/snmp /proc/net/netstat; echo {SEPARATOR}; "
          "nft -j list ruleset 2>/dev/null || true")
DROPPED = "dropped"  # the named counter of an impairment table (see module docstring)


def _proc_field(text: str, section: str, name: str) -> int:
    """A field of /proc/net/snmp or /proc/net/netstat (a header line, then a values line)."""
    lines = [ln.split() for ln in text.splitlines() if ln.startswith(f"{section}:")]
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        if name in head:
            return int(vals[head.index(name)])
    return 0


def _other_drops(items: list[dict[str, Any]]) -> int:
    total = 0
    for item in items:
        c = item.get("counter")
        if c is not None and c.get("table") != NETPOL_TABLE and c.get("name") == DROPPED:
            total += int(c["packets"])
        rule = item.get("rule")
        if rule is None or rule.get("table") == NETPOL_TABLE:
            continue
        exprs = rule.get("expr", [])
        if any("drop" in e for e in exprs):
            total += sum(int(e["counter"]["packets"]) for e in exprs
                         if isinstance(e.get("counter"), dict) and "packets" in e["counter"])
    return total


def parse(output: str) -> NetnsCounters:
    """The counters from the output of :data:`SCRIPT`."""
    proc, _, ruleset = output.partition(SEPARATOR)
    items: list[dict[str, Any]] = json.loads(ruleset).get("nftables", []) \
        if ruleset.strip() else []
    netpol = {"nftables": [i for i in items if "counter" in i]}
    d = denied(json.dumps(netpol))
    return NetnsCounters(
        denied_ingress=d["ingress"],
        denied_egress=d["egress"],
        tcp_retrans=_proc_field(proc, "Tcp", "RetransSegs"),
        tcp_timeouts=_proc_field(proc, "TcpExt", "TCPTimeouts"),
        dropped_other=_other_drops(items),
    )
