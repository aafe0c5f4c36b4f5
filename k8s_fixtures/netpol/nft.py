"""Compile NetworkPolicies to nftables rulesets, one ``inet`` table per pod network namespace.

For each pod the compiler emits ``table inet ztfl_netpol`` with

* chain ``input`` (ingress, hook input) when some Ingress policy selects the pod, and
* chain ``output`` (egress, hook output) when some Egress policy selects it,

each with ``policy drop``, then ``ct state established,related accept``, loopback accept, (for
ingress) the node's addresses, then one accept rule per (policy rule, peer, port) with the peer
pods resolved to their current IPs, and finally the deny rules (explicit rejects, or in ``drop``
mode one drop), which count the TCP, UDP and SCTP packets they refuse into the table's named
counter ``denied_ingress`` or ``denied_egress``: what the policy refused a workload is evidence
(the failure taxonomy reads it). A pod
selected by no policy gets no table at all (zero overhead, as under SEC0). Peers are resolved
from the cluster view, so the backend must re-sync whenever pods, namespaces or policies change
(:class:`Enforcer` re-applies only the namespaces whose ruleset changed).

Deny action (:class:`DenyAction`): ``reject`` (default) answers TCP with a reset and every other
protocol with ICMP admin-prohibited, so a denied connect fails in about a millisecond and the
proofs and probes never wait for timeouts; ``drop`` silently discards, as Calico, Cilium and
kindnet do by default, so a denied connect hangs until the client's timeout. Record
:meth:`Enforcer.metadata` with a run. Note that the kernel rate-limits ICMP errors per
destination (``net.ipv4.icmp_ratemask``/``icmp_ratelimit``, per network namespace): for UDP under
``reject`` a burst of denials can fall back to timeouts unless the pod namespace sets
``net.ipv4.icmp_ratemask=0``; TCP resets are not rate limited.

Rules are applied atomically with ``ip netns exec NS nft -f -`` using the idiom
``table inet T; delete table inet T; table inet T {...}`` in one transaction, which is
idempotent and never leaves a pod without rules in between. A table this enforcer applied before
is changed with ``flush table`` instead (rules go, named counters stay), so the deny counters
count over the pod's life although peers come and go (each one re-applies the table).
Established connections survive a policy change (conntrack), as with most CNIs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from k8s_fixtures.netpol.evaluator import isolating_policies, peer_matches
from k8s_fixtures.netpol.model import (
    ClusterView,
    Direction,
    IPBlock,
    NetworkPolicy,
    Pod,
    PolicyPort,
    Rule,
)

TABLE = "ztfl_netpol"
DENIED = {Direction.INGRESS: "denied_ingress", Direction.EGRESS: "denied_egress"}


class DenyAction(StrEnum):
    REJECT = "reject"
    DROP = "drop"


DEFAULT_DENY_ACTION = DenyAction.REJECT


class NftError(RuntimeError):
    """``nft`` refused a ruleset; the message names the pod namespace and nft's complaint."""


@dataclass(frozen=True)
class PodRuleset:
    """The compiled ruleset of one pod; ``table`` is empty when the pod is isolated nowhere."""

    pod: str
    netns: str | None
    ingress_isolated: bool
    egress_isolated: bool
    deny_action: DenyAction
    table: str

    @property
    def script(self) -> str:
        """The atomic nft script that replaces (or, when ``table`` is empty, removes) it."""
        return removal_script() + self.table

    def update_script(self, old: PodRuleset) -> str:
        """The atomic nft script that turns ``old`` (applied by this enforcer) into this
        ruleset and keeps the deny counters' values (a fresh table would zero them)."""
        if not self.table or not old.table:
            return self.script
        gone = [name for name, was, now in (("input", old.ingress_isolated,
                                              self.ingress_isolated),
                                             ("output", old.egress_isolated,
                                              self.egress_isolated)) if was and not now]
        return (f"table inet {TABLE} {{\n{_counters()}}}\nflush table inet {TABLE}\n"
                + "".join(f"delete chain inet {TABLE} {c}\n" for c in gone) + self.table)


def removal_script() -> str:
    return f"table inet {TABLE}\ndelete table inet {TABLE}\n"


def _counters() -> str:
    return "".join(f"\tcounter {name} {{\n\t}}\n" for name in DENIED.values())


def denied(listing: str) -> dict[str, int]:
    """``{"ingress": packets, "egress": packets}`` refused by the deny rules, from the JSON of
    ``nft -j list counters table inet ztfl_netpol`` (empty text: no table, nothing refused)."""
    import json

    out = {"ingress": 0, "egress": 0}
    if not listing.strip():
        return out
    names = {v: k.value.lower() for k, v in DENIED.items()}
    for item in json.loads(listing).get("nftables", []):
        c = item.get("counter")
        if c and c.get("table") == TABLE and c.get("name") in names:
            out[names[c["name"]]] = int(c["packets"])
    return out


def _family(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
            | ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return "ip" if ip.version == 4 else "ip6"


def _set(items: Iterable[str]) -> str:
    items = sorted(set(items), key=lambda s: (len(s), s))
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _addr_clauses(pods_ips: list[str], block: IPBlock | None, key: str) -> list[str]:
    """nft address matches (one per address family) for a set of pod IPs or an ipBlock.

    Addresses and ports are matched on conntrack's original tuple: what the peer addressed
    before any in-pod NAT. A CNI enforces policy outside the pod, so a sidecar's redirect
    (client app -> 127.0.0.1:4140, server 50051 -> 4143) must not change the verdict.
    """
    key = f"ct original {{fam}} {key}"
    if block is not None:
        fam = _family(block.cidr)
        clause = f"{key.format(fam=fam)} {block.cidr}"
        if block.excepts:
            clause += f" {key.format(fam=fam)} != {_set(str(e) for e in block.excepts)}"
        return [clause]
    by_fam: dict[str, list[str]] = defaultdict(list)
    for ip in pods_ips:
        by_fam[_family(ipaddress.ip_address(ip))].append(ip)
    return [f"{key.format(fam=fam)} {_set(ips)}" for fam, ips in sorted(by_fam.items())]


def _port_clause(pp: PolicyPort, number: int | None) -> str:
    """Match the rule's protocol and (original, see _addr_clauses) destination port."""
    proto = pp.protocol.lower()
    if pp.port is None:
        return f"meta l4proto {proto}"
    if number is None:
        number = pp.port if isinstance(pp.port, int) else None
    assert number is not None
    rng = f"{number}-{pp.end_port}" if pp.end_port is not None and pp.end_port != number \
        else str(number)
    return f"meta l4proto {proto} ct original proto-dst {rng}"


def _peer_pods(cluster: ClusterView, pol: NetworkPolicy, rule: Rule) -> list[Pod]:
    """Pods that match any of the rule's peers (all pods when the rule has no peers)."""
    if not rule.peers:
        return list(cluster.pods)
    return [p for p in cluster.pods
            if any(peer_matches(cluster, pol, peer, p, p.ip) for peer in rule.peers)]


def _rule_lines(cluster: ClusterView, pod: Pod, pol: NetworkPolicy, idx: int, rule: Rule,
                direction: Direction) -> list[str]:
    ingress = direction is Direction.INGRESS
    key = "saddr" if ingress else "daddr"
    comment = f'comment "{pol.key} spec.{"ingress" if ingress else "egress"}[{idx}]"'[:140]
    # Address part: None = any address.
    addr: list[str | None] = []
    if not rule.peers:
        addr = [None]
    for peer in rule.peers:
        if peer.ip_block is not None:
            addr.extend(_addr_clauses([], peer.ip_block, key))
        else:
            ips = [p.ip for p in cluster.pods if peer_matches(cluster, pol, peer, p, p.ip)]
            addr.extend(_addr_clauses(ips, None, key))
    lines: list[str] = []
    ports: list[PolicyPort | None] = list(rule.ports) or [None]
    for pp in ports:
        if pp is not None and isinstance(pp.port, str):
            if ingress:  # resolve on this pod (the destination)
                n = pod.resolve_port(pp.port, pp.protocol)
                if n is not None:
                    lines += [" ".join(x for x in (a, _port_clause(pp, n)) if x)
                              + f" accept {comment}" for a in addr]
            else:  # resolve on each destination pod the rule's peers allow
                by_port: dict[int, list[str]] = defaultdict(list)
                for dst in _peer_pods(cluster, pol, rule):
                    n = dst.resolve_port(pp.port, pp.protocol)
                    if n is not None:
                        by_port[n].append(dst.ip)
                for n, ips in sorted(by_port.items()):
                    lines += [f"{a} {_port_clause(pp, n)} accept {comment}"
                              for a in _addr_clauses(ips, None, key)]
            continue
        pc = _port_clause(pp, None) if pp is not None else None
        lines += [" ".join(x for x in (a, pc) if x) + f" accept {comment}" for a in addr]
    return lines


def _chain(cluster: ClusterView, pod: Pod, direction: Direction, policies: list[NetworkPolicy],
           deny: DenyAction) -> str:
    ingress = direction is Direction.INGRESS
    name, hook, lo = ("input", "input", "iif") if ingress else ("output", "output", "oif")
    body = [
        f"type filter hook {hook} priority filter; policy drop;",
        "ct state established,related accept",
        f'{lo} "lo" accept',
    ]
    if ingress and cluster.node_ips:
        for clause in _addr_clauses(list(cluster.node_ips), None, "saddr"):
            body.append(f'{clause} accept comment "from the pod\'s node"')
    for pol in policies:
        for i, rule in enumerate(pol.rules(direction)):
            body.extend(_rule_lines(cluster, pod, pol, i, rule, direction))
    # Counted: what a workload sends (TCP, UDP, SCTP). Not counted: the network's own control
    # traffic (ICMPv6 router solicitations, MLD and IGMP reports a fresh interface sends),
    # which is denied as well but says nothing about a workload.
    count = f'counter name "{DENIED[direction]}"'
    if deny is DenyAction.REJECT:
        body.append(f"meta l4proto tcp {count} reject with tcp reset")
        body.append(f"meta l4proto {{ udp, sctp }} {count} reject with icmpx admin-prohibited")
        body.append("reject with icmpx admin-prohibited")
    else:  # the policy's own drop counts nothing: one rule that does
        body.append(f"meta l4proto {{ tcp, udp, sctp }} {count} drop")
    inner = "\n".join(f"\t\t{b}" for b in body)
    return f"\tchain {name} {{\n{inner}\n\t}}\n"


def compile_pod(cluster: ClusterView, pod: Pod, deny_action: DenyAction = DEFAULT_DENY_ACTION
                ) -> PodRuleset:
    """The ruleset of one pod of ``cluster``."""
    ing = isolating_policies(cluster, pod, Direction.INGRESS)
    egr = isolating_policies(cluster, pod, Direction.EGRESS)
    chains = ""
    if ing:
        chains += _chain(cluster, pod, Direction.INGRESS, ing, deny_action)
    if egr:
        chains += _chain(cluster, pod, Direction.EGRESS, egr, deny_action)
    table = f"table inet {TABLE} {{\n{_counters()}{chains}}}\n" if chains else ""
    return PodRuleset(pod.key, pod.netns, bool(ing), bool(egr), deny_action, table)


def compile_cluster(cluster: ClusterView, deny_action: DenyAction = DEFAULT_DENY_ACTION
                    ) -> dict[str, PodRuleset]:
    """Every pod's ruleset, keyed by ``namespace/name``."""
    return {p.key: compile_pod(cluster, p, deny_action) for p in cluster.pods}


Runner = Callable[[str, str], None]
APPLY_WORKERS = 4  # nft processes at once during a sync


def run_nft(netns: str, script: str) -> None:
    """Feed ``script`` to ``nft -f -`` inside ``netns`` in one transaction."""
    proc = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script,
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or [str(proc.returncode)])[0]
        raise NftError(f"nft in netns {netns}: {first}")


def apply_ruleset(rs: PodRuleset, runner: Runner = run_nft, old: PodRuleset | None = None
                  ) -> None:
    """Replace (or remove) the pod's table atomically; idempotent. ``old``: the ruleset this
    enforcer applied in the same namespace before (its deny counters are kept)."""
    if rs.netns is None:
        raise NftError(f"pod {rs.pod}: no network namespace to apply rules in")
    runner(rs.netns, rs.script if old is None else rs.update_script(old))


def remove_ruleset(netns: str, runner: Runner = run_nft) -> None:
    """Remove the table from ``netns`` (no error if it is not there)."""
    runner(netns, removal_script())


@dataclass
class SyncReport:
    applied: list[str] = field(default_factory=list)  # pod keys whose ruleset was (re)applied
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # pods gone from the view
    compile_s: float = 0.0
    apply_s: float = 0.0


@dataclass
class Enforcer:
    """Keeps every pod namespace's table in line with the cluster view; call :meth:`sync`."""

    deny_action: DenyAction = DEFAULT_DENY_ACTION
    runner: Runner = run_nft
    applied: dict[str, PodRuleset] = field(default_factory=dict)

    def sync(self, cluster: ClusterView) -> SyncReport:
        report = SyncReport()
        t0 = time.perf_counter()
        wanted = {k: rs for k, rs in compile_cluster(cluster, self.deny_action).items()
                  if rs.netns is not None}
        report.compile_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        todo: list[tuple[str, PodRuleset, PodRuleset | None]] = []
        for key, rs in wanted.items():
            old = self.applied.get(key)
            if old is not None and old.netns == rs.netns and old.table == rs.table:
                report.unchanged.append(key)
                continue
            todo.append((key, rs, old if old is not None and old.netns == rs.netns else None))
        # one nft process per pod namespace (a transaction cannot span namespaces): run them
        # side by side, as a CNI agent programs pods independently; every table that was
        # applied is recorded (removed later), then the first error is raised
        with ThreadPoolExecutor(max_workers=APPLY_WORKERS) as pool:
            futures = [pool.submit(apply_ruleset, rs, self.runner, old) for _, rs, old in todo]
        errors = [f.exception() for f in futures]
        for (key, rs, _), err in zip(todo, errors, strict=True):
            if err is None:
                self.applied[key] = rs
                report.applied.append(key)
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        for key in [k for k in self.applied if k not in wanted]:
            gone = self.applied.pop(key)
            report.removed.append(key)
            if gone.netns is not None:
                with contextlib.suppress(NftError):  # the namespace went away with the pod
                    remove_ruleset(gone.netns, self.runner)
        report.apply_s = time.perf_counter() - t1
        return report

    def remove_all(self) -> None:
        """Remove every table this enforcer applied (namespaces already gone are skipped)."""
        for rs in self.applied.values():
            if rs.netns is not None:
                with contextlib.suppress(NftError):
                    remove_ruleset(rs.netns, self.runner)
        self.applied.clear()

    def metadata(self) -> dict[str, str]:
        """What a run records about enforcement (shaped for the row's ``overlays.netpol``)."""
        return {"enforcement": "nftables", "action": self.deny_action.value,
                "table": f"inet {TABLE}"}
