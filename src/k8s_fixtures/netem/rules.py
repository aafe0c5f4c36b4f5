"""iptables rules that steer bridged client<->server packets into the delay line's queues.

The hook is the bridge FORWARD path of the node namespace (``br_netfilter``), never a sender's
OUTPUT path (TCP Small Queues would throttle a sender whose packets are held). Every rule lives in
our own chain ``ZTFL-NETEM`` jumped to from FORWARD, so removal is exact and leaves any other
rule in the namespace alone. ``--queue-bypass`` means a dead delay line lets packets through
undelayed instead of blackholing them; the liveness check in :mod:`.handle` catches that.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

CHAIN = "ZTFL-NETEM"
SYSCTL = "net.bridge.bridge-nf-call-iptables"


class RuleError(RuntimeError):
    """An iptables/sysctl command failed; the message carries the command and its stderr."""


@dataclass(frozen=True)
class QueueRule:
    """Packets bridged from ``phys_in`` to ``phys_out`` go to NFQUEUE ``queue``."""

    queue: int
    phys_in: str
    phys_out: str
    label: str = ""


def _ns(netns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd]


def render_rules(netns: str, rules: list[QueueRule]) -> list[list[str]]:
    """The commands that create the chain, jump to it, and add one NFQUEUE rule per class."""
    ipt = ("iptables", "-w", "5", "-t", "filter")
    cmds = [_ns(netns, *ipt, "-N", CHAIN), _ns(netns, *ipt, "-I", "FORWARD", "1", "-j", CHAIN)]
    for r in rules:
        cmds.append(_ns(netns, *ipt, "-A", CHAIN, "-m", "physdev", "--physdev-is-bridged",
                        "--physdev-in", r.phys_in, "--physdev-out", r.phys_out,
                        "-j", "NFQUEUE", "--queue-num", str(r.queue), "--queue-bypass"))
    return cmds


def render_removal(netns: str) -> list[list[str]]:
    ipt = ("iptables", "-w", "5", "-t", "filter")
    return [_ns(netns, *ipt, "-D", "FORWARD", "-j", CHAIN), _ns(netns, *ipt, "-F", CHAIN),
            _ns(netns, *ipt, "-X", CHAIN)]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def install(netns: str, rules: list[QueueRule]) -> None:
    for cmd in render_rules(netns, rules):
        p = _run(cmd)
        if p.returncode != 0:
            raise RuleError(f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}")


def remove(netns: str) -> list[str]:
    """Remove our chain and every jump to it; return the problems (empty if clean)."""
    problems: list[str] = []
    jump, flush, delete = render_removal(netns)
    for _ in range(16):  # delete every jump (normally one)
        if _run(jump).returncode != 0:
            break
    for cmd in (flush, delete):
        p = _run(cmd)
        if p.returncode != 0 and "No chain" not in p.stderr and "does not exist" not in p.stderr:
            problems.append(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return problems


def installed(netns: str) -> bool:
    """True if our chain is present and referenced from FORWARD."""
    p = _run(_ns(netns, "iptables", "-w", "5", "-t", "filter", "-S", "FORWARD"))
    return p.returncode == 0 and f"-j {CHAIN}" in p.stdout


def bridge_nf(netns: str, value: int | None = None) -> int:
    """Read (and optionally set) bridge-nf-call-iptables in ``netns``; return the old value."""
    p = _run(_ns(netns, "sysctl", "-n", SYSCTL))
    if p.returncode != 0:
        _run(["modprobe", "br_netfilter"])
        p = _run(_ns(netns, "sysctl", "-n", SYSCTL))
        if p.returncode != 0:
            raise RuleError(f"{SYSCTL} unavailable in {netns} (br_netfilter): {p.stderr.strip()}")
    old = int(p.stdout.strip())
    if value is not None and value != old:
        q = _run(_ns(netns, "sysctl", "-w", f"{SYSCTL}={value}"))
        if q.returncode != 0:
            raise RuleError(f"sysctl -w {SYSCTL}={value} in {netns}: {q.stderr.strip()}")
    return old
