"""Network namespaces as a tiny L2 network: one "node" namespace with a bridge, pods on veths.

This is the kernel plumbing under the local backend, with no Kubernetes notions in it: create a
node, attach pod namespaces with an address each, run commands in them, and remove everything.
Names carry a caller-chosen prefix so concurrent users of one machine never touch each
other's namespaces. All work is done with iproute2 (``ip``), which is on every Linux box.
"""

from __future__ import annotations

import ipaddress
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

BRIDGE = "br0"
POD_IF = "eth0"


class TopologyError(RuntimeError):
    """A kernel operation failed; the message names the namespace/link and the command."""


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 30) -> str:
    """Run a command, returning stdout; raise TopologyError with its stderr on failure."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise TopologyError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def netns_list() -> list[str]:
    """Names of all named network namespaces on this machine (or in this mount namespace)."""
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_exec(ns: str, *cmd: str) -> list[str]:
    """The argv that runs ``cmd`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *cmd]


@dataclass
class PodLink:
    """One pod namespace attached to the node bridge."""

    netns: str
    ip: str
    host_if: str  # the veth end inside the node namespace (enslaved to the bridge)
    pod_if: str = POD_IF


@dataclass
class Node:
    """A node namespace with a bridge; pods are attached to it with :meth:`add_pod`."""

    prefix: str
    cidr: str = "10.244.0.0/16"
    pods: dict[str, PodLink] = field(default_factory=dict)
    _next_host: int = 2  # .1 is the bridge (the pods' gateway)

    @property
    def netns(self) -> str:
        return f"{self.prefix}-node"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    def create(self) -> Node:
        """Create the node namespace and its bridge (idempotent failure: raises if it exists)."""
        net = self.network
        if net.num_addresses < 4:
            raise TopologyError(f"node {self.prefix}: cidr {self.cidr} is too small")
        run(["ip", "netns", "add", self.netns])
        try:
            ex = ["ip", "-n", self.netns]
            run([*ex, "link", "set", "lo", "up"])
            run([*ex, "link", "add", BRIDGE, "type", "bridge"])
            run([*ex, "addr", "add", f"{self.gateway}/{net.prefixlen}", "dev", BRIDGE])
            run([*ex, "link", "set", BRIDGE, "up"])
        except Exception:
            self.destroy()
            raise
        return self

    def allocate_ip(self) -> str:
        net = self.network
        used = {p.ip for p in self.pods.values()}
        while True:
            if self._next_host >= net.num_addresses - 1:
                raise TopologyError(f"node {self.prefix}: pod cidr {self.cidr} is exhausted")
            ip = str(net.network_address + self._next_host)
            self._next_host += 1
            if ip not in used:
                return ip

    def add_pod(self, name: str, ip: str | None = None) -> PodLink:
        """Create namespace ``<prefix>-<name>`` with eth0 on the bridge; return its link."""
        if name in self.pods:
            raise TopologyError(f"node {self.prefix}: pod {name} already exists")
        ip = ip or self.allocate_ip()
        ns = f"{self.prefix}-{name}"
        host_if = f"v{zlib.crc32(ns.encode()):08x}"
        run(["ip", "netns", "add", ns])
        link = PodLink(netns=ns, ip=ip, host_if=host_if)
        try:
            run(["ip", "-n", self.netns, "link", "add", host_if, "type", "veth",
                 "peer", "name", POD_IF, "netns", ns])
            run(["ip", "-n", self.netns, "link", "set", host_if, "master", BRIDGE, "up"])
            ex = ["ip", "-n", ns]
            run([*ex, "link", "set", "lo", "up"])
            run([*ex, "addr", "add", f"{ip}/{self.network.prefixlen}", "dev", POD_IF])
            run([*ex, "link", "set", POD_IF, "up"])
            run([*ex, "route", "add", "default", "via", self.gateway])
        except Exception:
            run(["ip", "netns", "del", ns], check=False)
            run(["ip", "-n", self.netns, "link", "del", host_if], check=False)
            raise
        self.pods[name] = link
        return link

    def remove_pod(self, name: str) -> None:
        link = self.pods.pop(name, None)
        if link is None:
            return
        # Deleting the namespace destroys eth0 and with it the veth peer in the node.
        run(["ip", "netns", "del", link.netns], check=False)

    def destroy(self) -> None:
        """Remove every pod namespace and the node namespace; never raises for missing ones."""
        for name in list(self.pods):
            self.remove_pod(name)
        run(["ip", "netns", "del", self.netns], check=False)


def remove_prefixed(prefix: str) -> list[str]:
    """Delete every namespace whose name starts with ``prefix-``; return the names removed."""
    gone = [ns for ns in netns_list() if ns.startswith(f"{prefix}-")]
    for ns in gone:
        run(["ip", "netns", "del", ns], check=False)
    return gone
