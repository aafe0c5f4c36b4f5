"""The "no plaintext on the wire" proof: capture on an interface in a namespace, then judge it.

Usage::

    with WireCapture(node_netns, "br0", marker_to=server_ip, workdir=tmp) as cap:
        transfer_something_recognisable()
    verdict = cap.verdict(pattern)   # pattern_seen, all_tls, tcp_payload_bytes, ...

or in one call ``capture_during(node_netns, "br0", transfer, pattern, marker_to=..., workdir=...)``.

tcpdump runs in ``netns`` (``ip netns exec``, packet-buffered, immediate mode). Start-up waits
for tcpdump's "listening on" line. To know the tail of the traffic was written before tcpdump is
stopped, a UDP datagram with a random token is sent from ``netns`` to ``marker_to`` (any address
routed through the interface, e.g. a pod IP when capturing on the node bridge) and the file is
polled until the token appears. The capture is judged by :mod:`.pcap`. Callers should check
``tcp_payload_bytes`` covers what they sent, so a capture that saw nothing cannot pass.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from k8s_fixtures.proc import die_with_parent

from .pcap import Packet, Stream, contains, read_packets, tcp_streams, tls_view

MARKER_PORT = 9  # discard
RESEND = 1.0  # s between markers of one flush
BUFFER_KIB = 16384  # tcpdump -B: the capture's kernel buffer


class CaptureError(RuntimeError):
    """tcpdump could not be started or the capture is incomplete; the message says where."""


@dataclass(frozen=True)
class FlowVerdict:
    src: str
    dst: str
    nbytes: int
    tls_records: int
    non_tls_bytes: int
    tls13: bool
    unaligned_bytes: int = 0  # captured between drops, too short to judge (see pcap.tls_view)

    @property
    def is_tls(self) -> bool:
        return self.tls_records > 0 and self.non_tls_bytes == 0


@dataclass(frozen=True)
class CaptureVerdict:
    """What the capture shows: was the pattern seen in clear, and was every TCP flow TLS?"""

    pattern_seen: bool
    all_tls: bool
    tcp_payload_bytes: int
    packets: int
    flows: tuple[FlowVerdict, ...]

    @property
    def plaintext_flows(self) -> list[FlowVerdict]:
        return [f for f in self.flows if not f.is_tls]


def judge(pcap: bytes, pattern: bytes, *, ignore_ports: tuple[int, ...] = ()) -> CaptureVerdict:
    """Judge a pcap: ``pattern`` seen in clear? every TCP flow (except ``ignore_ports``) TLS?"""
    pkts: list[Packet] = [p for p in read_packets(pcap)
                          if p.proto == 6 and p.sport not in ignore_ports
                          and p.dport not in ignore_ports]
    streams: list[Stream] = tcp_streams(pkts)
    flows = []
    for s in streams:
        v = tls_view(s)
        flows.append(FlowVerdict(s.src, s.dst, s.nbytes, v.records, v.non_tls_bytes, v.tls13,
                                 v.unaligned_bytes))
    return CaptureVerdict(
        pattern_seen=contains(streams, pkts, pattern),
        all_tls=bool(flows) and all(f.is_tls for f in flows),
        tcp_payload_bytes=sum(len(p.payload) for p in pkts),
        packets=len(pkts), flows=tuple(flows))


def _send_marker(netns: str, dst: str, token: bytes) -> str | None:
    """Send one marker datagram; the reason it could not be sent, or None."""
    # bash's /dev/udp: a datagram for a few ms of CPU (a Python child costs ~50 ms, and this
    # runs while a measured round goes on)
    proc = subprocess.run(["ip", "netns", "exec", netns, "bash", "-c",
                           f'printf %s "$1" > "/dev/udp/$2/{MARKER_PORT}"', "marker",
                           token.decode(), dst], capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


def _neighbour(netns: str, ip: str) -> str:
    """``; neighbour <ip neigh line>`` for the error message (empty when unknown)."""
    try:
        out = subprocess.run(["ip", "netns", "exec", netns, "ip", "neigh", "show", ip],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"; neighbour {out or 'none'}"


class WireCapture:
    """A running tcpdump on ``iface`` inside ``netns`` writing ``workdir/<name>.pcap``."""

    def __init__(self, netns: str, iface: str, *, marker_to: str, workdir: Path,
                 name: str = "wire", bpf: str = "tcp or udp", timeout: float = 10.0) -> None:
        self.netns, self.iface, self.marker_to, self.timeout = netns, iface, marker_to, timeout
        self.path = workdir / f"{name}.pcap"
        self.bpf = bpf
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = ""
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> WireCapture:
        # -Z root: no privilege drop, which would clear the parent-death signal below.
        # -B: a 16 MiB kernel buffer (default 2 MiB), so a burst (a model update, megabytes at
        # once) waits there while tcpdump writes on a loaded machine instead of being dropped.
        argv = ["ip", "netns", "exec", self.netns, "tcpdump", "-Z", "root", "-i", self.iface,
                "-n", "-U", "--immediate-mode", "-B", str(BUFFER_KIB), "-s", "0",
                "-w", str(self.path), self.bpf]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=die_with_parent)
        assert self.proc.stderr is not None
        deadline, buf = time.monotonic() + self.timeout, b""
        while b"listening on" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise CaptureError(f"tcpdump on {self.iface} in {self.netns} did not start: "
                                   f"{buf.decode(errors='replace').strip() or self.stderr}")
            ready, _, _ = select.select([self.proc.stderr], [], [], left)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                if not chunk:
                    continue
                buf += chunk
        return self

    def flush(self) -> None:
        """Send a marker datagram and wait until tcpdump has written it (all before it too).

        Only the bytes written since the last look are searched, raw: the capture can be tens
        of MB by now and this runs while a measured round goes on, so it is never parsed here.
        The marker is sent again every ``RESEND`` s: one UDP datagram can be lost before it
        reaches the wire (its send refused, or dropped while the node resolves the address's
        neighbour entry), and a lost marker says nothing about the capture.
        """
        token = b"ztfl-capture-marker-" + secrets.token_hex(8).encode()
        deadline = time.monotonic() + self.timeout
        offset, tail, sent, next_send = 0, b"", 0, 0.0
        refused: str | None = None
        while True:
            now = time.monotonic()
            if now >= next_send:
                refused = _send_marker(self.netns, self.marker_to, token) or refused
                sent, next_send = sent + 1, now + RESEND
            if self.path.exists():
                with self.path.open("rb") as f:
                    f.seek(offset)
                    new = f.read()
                offset += len(new)
                if token in tail + new:
                    return
                tail = (tail + new)[-len(token):]
            exited = self.proc.poll() if self.proc is not None else None
            if time.monotonic() > deadline or exited is not None:
                state = "running" if exited is None else f"exited with {exited}"
                raise CaptureError(
                    f"capture on {self.iface} in {self.netns}: marker to {self.marker_to} "
                    f"never captured ({sent} sent in {self.timeout:g} s; tcpdump {state}, "
                    f"{offset} bytes written{_neighbour(self.netns, self.marker_to)}"
                    f"{f'; a send failed: {refused}' if refused else ''})")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop tcpdump (SIGINT, then SIGKILL); safe to call twice."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)
            try:
                p.wait(self.timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        if p.stderr is not None and not p.stderr.closed:
            self.stderr += p.stderr.read().decode(errors="replace")
            p.stderr.close()

    def __enter__(self) -> WireCapture:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if et is None:
                self.flush()
        finally:
            self.stop()

    def verdict(self, pattern: bytes) -> CaptureVerdict:
        return judge(self.path.read_bytes(), pattern, ignore_ports=(MARKER_PORT,))


def capture_during(netns: str, iface: str, action: Callable[[], object], pattern: bytes, *,
                   marker_to: str, workdir: Path, name: str = "wire") -> CaptureVerdict:
    """Capture on ``iface`` in ``netns`` while ``action()`` runs; judge it for ``pattern``."""
    with WireCapture(netns, iface, marker_to=marker_to, workdir=workdir, name=name) as cap:
        action()
    return cap.verdict(pattern)
