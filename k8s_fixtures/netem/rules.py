"""iptables rules that steer bridged client<->server packets into the delay line's queues.

The hook is the bridge FORWARD path of the node namespace (``br_netfilter``), never a sender's
OUTPUT path (TCP Small Queues would throttle a sender whose packets are held). Every handle's
rules live in a chain of their own, ``ZTFL-NETEM-<tag>`` (:func:`chain_name`), jumped to from
FORWARD, so several handles (one per shaped Kubernetes namespace) can be in force in one node
namespace at once and removing one (:func:`remove`) deletes exactly its chain and its jump,
leaving the others' rules, and any other rule in the namespace, alone. A handle's rules match
only its own client<->server veth pairs, so a packet is queued by at most one chain.
:func:`chains` lists every ``ZTFL-NETEM*`` chain of a node namespace and :func:`remove_all`
removes them all, for cleanup that must not depend on which handles made them.
``--queue-bypass`` means a dead delay line lets packets through undelayed instead of
blackholing them; the liveness check of :class:`.overlay.NetemHandle` catches that.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

CHAIN_PREFIX = "ZTFL-NETEM"
CHAIN_MAX_LEN = 28  # iptables: XT_EXTENSION_MAXNAMELEN (29) less the NUL
SYSCTL = "net.bridge.bridge-nf-call-iptables"
_TAG = re.compile(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*")
_IPT = ("iptables", "-w", "5", "-t", "filter")


class RuleError(RuntimeError):
    """An iptables/sysctl command failed; the message carries the command and its stderr."""


@dataclass(frozen=True)
class QueueRule:
    """Packets bridged from ``phys_in`` to ``phys_out`` go to NFQUEUE ``queue``."""

    queue: int
    phys_in: str
    phys_out: str
    label: str = ""


def chain_name(tag: str) -> str:
    """``ZTFL-NETEM-<tag>``; raises ValueError if the tag is empty, has characters other than
    letters, digits, ``_ . -`` (no leading, trailing or doubled ``-``), or makes the name
    longer than iptables allows (28 characters)."""
    name = f"{CHAIN_PREFIX}-{tag}"
    if not _TAG.fullmatch(tag) or len(name) > CHAIN_MAX_LEN:
        raise ValueError(f"netem chain tag {tag!r}: want [A-Za-z0-9_.-], at most "
                         f"{CHAIN_MAX_LEN - len(CHAIN_PREFIX) - 1} characters")
    return name


def is_ours(chain: str) -> bool:
    """True for a chain name :func:`chain_name` makes (or the single chain of old versions)."""
    return chain == CHAIN_PREFIX or chain.startswith(f"{CHAIN_PREFIX}-")


def _check_chain(chain: str) -> None:
    if not is_ours(chain) or len(chain) > CHAIN_MAX_LEN:
        raise ValueError(f"{chain!r} is not a netem chain name (see rules.chain_name)")


def _ns(netns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd]


def render_rules(netns: str, chain: str, rules: list[QueueRule]) -> list[list[str]]:
    """The commands that create ``chain``, jump to it from FORWARD, and add one NFQUEUE rule
    per class."""
    _check_chain(chain)
    cmds = [_ns(netns, *_IPT, "-N", chain), _ns(netns, *_IPT, "-I", "FORWARD", "1", "-j", chain)]
    for r in rules:
        cmds.append(_ns(netns, *_IPT, "-A", chain, "-m", "physdev", "--physdev-is-bridged",
                        "--physdev-in", r.phys_in, "--physdev-out", r.phys_out,
                        "-j", "NFQUEUE", "--queue-num", str(r.queue), "--queue-bypass"))
    return cmds


def render_removal(netns: str, chain: str) -> list[list[str]]:
    """The commands that delete one jump to ``chain``, flush it and delete it."""
    _check_chain(chain)
    return [_ns(netns, *_IPT, "-D", "FORWARD", "-j", chain), _ns(netns, *_IPT, "-F", chain),
            _ns(netns, *_IPT, "-X", chain)]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def install(netns: str, chain: str, rules: list[QueueRule]) -> None:
    """Create ``chain`` with ``rules`` and its jump, or raise RuleError and leave nothing of
    it behind. A chain of that name that already exists is someone else's: the error is
    raised without touching it."""
    for i, cmd in enumerate(render_rules(netns, chain, rules)):
        p = _run(cmd)
        if p.returncode != 0:
            msg = f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}"
            if i > 0:  # we created the chain: take it (and its jump, if made) away again
                left = remove(netns, chain)
                if left:
                    msg += f"; removing {chain} again: {'; '.join(left)}"
            raise RuleError(msg)


def remove(netns: str, chain: str) -> list[str]:
    """Remove ``chain`` and every jump to it (no other chain); return the problems (empty if
    clean, also when the chain was not there)."""
    problems: list[str] = []
    jump, flush, delete = render_removal(netns, chain)
    for _ in range(16):  # delete every jump (normally one)
        if _run(jump).returncode != 0:
            break
    for cmd in (flush, delete):
        p = _run(cmd)
        if p.returncode != 0 and "No chain" not in p.stderr and "does not exist" not in p.stderr:
            problems.append(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return problems


def _rules_text(netns: str) -> str | None:
    """``iptables -S`` of the filter table in ``netns``; None if it cannot be read (no such
    namespace, no iptables)."""
    try:
        p = _run(_ns(netns, *_IPT, "-S"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def present(netns: str) -> dict[str, list[int]]:
    """Every ``ZTFL-NETEM*`` chain in ``netns`` -> the NFQUEUE numbers its rules use (empty if
    the rules cannot be read)."""
    out: dict[str, list[int]] = {}
    for line in (_rules_text(netns) or "").splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] == "-N" and is_ours(w[1]):
            out.setdefault(w[1], [])
        elif len(w) >= 2 and w[0] == "-A" and is_ours(w[1]) and "--queue-num" in w:
            i = w.index("--queue-num")
            if i + 1 < len(w) and w[i + 1].isdigit():
                out.setdefault(w[1], []).append(int(w[i + 1]))
    return out


def chains(netns: str) -> list[str]:
    """The names of every ``ZTFL-NETEM*`` chain in ``netns``, sorted."""
    return sorted(present(netns))


def remove_all(netns: str) -> list[str]:
    """Remove every ``ZTFL-NETEM*`` chain of ``netns`` and its jumps, whoever made it (cleanup
    of a node namespace that outlives its handles); return the problems."""
    problems: list[str] = []
    for chain in chains(netns):
        problems += remove(netns, chain)
    return problems


def installed(netns: str, chain: str) -> bool:
    """True if ``chain`` is referenced from FORWARD (an exact name: ``ZTFL-NETEM-10`` does not
    match a jump to ``ZTFL-NETEM-100``)."""
    p = _run(_ns(netns, *_IPT, "-S", "FORWARD"))
    return p.returncode == 0 and any(
        line.split()[-2:] == ["-j", chain] for line in p.stdout.splitlines())


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
