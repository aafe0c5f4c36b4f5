"""Detect at run time whether this kernel has netem (never assumed either way).

A throwaway namespace with a veth pair (the dummy driver is not on every kernel) gets a
netem qdisc; success means the kernel path is available. The namespace is ours (prefix
``ztdl-probe-``) and is always deleted.
"""

from __future__ import annotations

import functools
import os
import secrets
import subprocess


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)


@functools.cache
def probe_netem() -> tuple[bool, str]:
    """(available, evidence): try ``tc qdisc add ... netem`` on a veth in a fresh namespace.
    Once per process: the kernel's modules do not change under a running harness."""
    ns = f"ztdl-probe-{os.getpid()}-{secrets.token_hex(3)}"
    made = _run("ip", "netns", "add", ns)
    if made.returncode != 0:
        return False, f"cannot create a probe namespace: {made.stderr.strip()}"
    try:
        for cmd in (("ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"),
                    ("ip", "-n", ns, "link", "set", "d0", "up")):
            r = _run(*cmd)
            if r.returncode != 0:
                return False, f"{' '.join(cmd)}: {r.stderr.strip()}"
        r = _run("tc", "-n", ns, "qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms")
        if r.returncode == 0:
            return True, "tc qdisc add ... netem delay 1ms succeeded"
        return False, f"tc qdisc add ... netem: {r.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", ns)


def netem_available() -> bool:
    """:func:`probe_netem`'s verdict."""
    return probe_netem()[0]
