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
from collections.abc import Callable, Sequence
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
    wrap: tuple[str, ...] = ()  # command prefix (rootless: nsenter into the holder's namespaces)
    on_netns: Callable[[str], None] | None = None  # told each namespace name before creation
    _next_host: int = 2  # .1 is the bridge (the pods' gateway)

    def _run(self, cmd: Sequence[str], *, check: bool = True) -> str:
        return run([*self.wrap, *cmd], check=check)

    def _batch(self, ns: str | None, lines: list[str], *, force: bool = False) -> None:
        """Run ``ip`` commands (one per line) in one process, inside ``ns`` if given."""
        cmd = [*self.wrap, "ip", *(["-force"] if force else []), *(["-n", ns] if ns else []),
               "-batch", "-"]
        proc = subprocess.run(cmd, input="\n".join(lines), text=True, capture_output=True,
                              timeout=30)
        if proc.returncode != 0 and not force:
            where = f"ip -n {ns}" if ns else "ip"
            raise TopologyError(f"{where} -batch: {proc.stderr.strip()}")

    def _claim(self, names: Sequence[str]) -> None:
        """Refuse names that exist already (they are someone else's: never record or delete
        them), then report the rest as ours before they are created."""
        taken = set(self._run(["ip", "netns", "list"], check=False).split()) & set(names)
        if taken:
            raise TopologyError(f"network namespace {sorted(taken)[0]} already exists "
                                "(another cluster with the same name?)")
        for ns in names:
            if self.on_netns is not None:
                self.on_netns(ns)

    def _add_netns(self, ns: str) -> None:
        self._claim([ns])
        self._run(["ip", "netns", "add", ns])

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
        self._add_netns(self.netns)  # raises before anything is ours if the name is taken
        try:
            self._batch(self.netns, [
                "link set lo up",
                f"link add {BRIDGE} type bridge",
                f"addr add {self.gateway}/{net.prefixlen} dev {BRIDGE}",
                f"link set {BRIDGE} up",
            ])
        except Exception:
            self.destroy()
            raise
        return self

    def allocate_ip(self) -> str:
        """The next free address, searching round-robin so deleted pods' addresses return."""
        net = self.network
        used = {p.ip for p in self.pods.values()}
        hosts = net.num_addresses - 3  # minus network, gateway (.1) and broadcast
        for _ in range(hosts):
            if not 2 <= self._next_host < net.num_addresses - 1:
                self._next_host = 2
            ip = str(net.network_address + self._next_host)
            self._next_host += 1
            if ip not in used:
                return ip
        raise TopologyError(f"node {self.prefix}: pod cidr {self.cidr} is exhausted")

    def add_pod(self, name: str, ip: str | None = None) -> PodLink:
        """Create namespace ``<prefix>-<name>`` with eth0 on the bridge; return its link."""
        if name in self.pods:
            raise TopologyError(f"node {self.prefix}: pod {name} already exists")
        ip = ip or self.allocate_ip()
        ns = f"{self.prefix}-{name}"
        host_if = f"v{zlib.crc32(ns.encode()):08x}"
        self._add_netns(ns)
        link = PodLink(netns=ns, ip=ip, host_if=host_if)
        try:
            # Two ``ip -batch`` runs instead of six processes: pod start-up is on the critical
            # path of every run.
            self._batch(self.netns, [
                f"link add {host_if} type veth peer name {POD_IF} netns {ns}",
                f"link set {host_if} master {BRIDGE} up",
            ])
            self._batch(ns, [
                "link set lo up",
                f"addr add {ip}/{self.network.prefixlen} dev {POD_IF}",
                f"link set {POD_IF} up",
                f"route add default via {self.gateway}",
            ])
        except Exception:
            self._run(["ip", "netns", "del", ns], check=False)
            self._run(["ip", "-n", self.netns, "link", "del", host_if], check=False)
            raise
        self.pods[name] = link
        return link

    def add_pods(self, names: Sequence[str]) -> list[PodLink]:
        """Like :meth:`add_pod` for many pods, in 2 + len(names) ``ip`` runs instead of 3 each.

        All or nothing: on failure every namespace of this call is removed again.
        """
        for name in names:
            if name in self.pods or names.count(name) > 1:
                raise TopologyError(f"node {self.prefix}: pod {name} already exists")
        links = []
        for name in names:
            ns = f"{self.prefix}-{name}"
            links.append(PodLink(ns, self.allocate_ip(), f"v{zlib.crc32(ns.encode()):08x}"))
        if not links:
            return []
        self._claim([link.netns for link in links])
        try:
            self._batch(None, [f"netns add {link.netns}" for link in links])
            node_lines = []
            for link in links:
                node_lines += [
                    f"link add {link.host_if} type veth peer name {POD_IF} netns {link.netns}",
                    f"link set {link.host_if} master {BRIDGE} up",
                ]
            self._batch(self.netns, node_lines)
            for link in links:
                self._batch(link.netns, [
                    "link set lo up",
                    f"addr add {link.ip}/{self.network.prefixlen} dev {POD_IF}",
                    f"link set {POD_IF} up",
                    f"route add default via {self.gateway}",
                ])
        except Exception:
            self._del_netns([link.netns for link in links])
            raise
        for name, link in zip(names, links, strict=True):
            self.pods[name] = link
        return links

    def _del_netns(self, names: Sequence[str]) -> None:
        # -force: carry on past namespaces that are already gone
        if names:
            self._batch(None, [f"netns del {ns}" for ns in names], force=True)

    def remove_pods(self, names: Sequence[str]) -> None:
        """Remove several pods with one ``ip`` run each for their links and namespaces."""
        links = [self.pods.pop(n) for n in names if n in self.pods]
        if links:
            # The kernel tears a deleted namespace's devices down asynchronously: delete the
            # veth pairs first (synchronous), or a pod re-created at once under the same name
            # finds its node-side veth name still taken ("File exists").
            self._batch(self.netns, [f"link del {link.host_if}" for link in links], force=True)
        self._del_netns([link.netns for link in links])

    def destroy(self) -> None:
        """Remove every pod namespace and the node namespace; never raises for missing ones."""
        self.remove_pods(list(self.pods))
        self._run(["ip", "netns", "del", self.netns], check=False)


def remove_prefixed(prefix: str) -> list[str]:
    """Delete every namespace whose name starts with ``prefix-``; return the names removed."""
    gone = [ns for ns in netns_list() if ns.startswith(f"{prefix}-")]
    for ns in gone:
        run(["ip", "netns", "del", ns], check=False)
    return gone


def host_route_overlap(cidr: str) -> str | None:
    """The host route (other than default) that ``cidr`` overlaps, as ``ip route`` shows it."""
    net = ipaddress.IPv4Network(cidr)
    for line in run(["ip", "-4", "route", "show", "table", "all"], check=False).splitlines():
        words = line.split()
        if not words:
            continue
        dest = words[1] if words[0] in ("local", "broadcast", "unicast") else words[0]
        if dest == "default" or words[0] in ("broadcast",):
            continue
        try:
            other = ipaddress.IPv4Network(dest, strict=False)
        except ValueError:
            continue
        if other.prefixlen > 0 and net.overlaps(other):
            return line.strip()
    return None
