"""Measurement agents run inside pod namespaces: a probe server and client-side measurements.

``python -m k8s_fixtures.netem.probe server --port P`` serves, on one TCP and one UDP port:
``ECHO`` (64-byte request/response), ``SINK`` (receive a bulk transfer, report the arrival
timeline), ``SOURCE <s>`` (send for <s> seconds), ``UDPSTAT <sid>`` (which UDP probes arrived
when), and echoes every UDP probe with its arrival time; port+1 is a UDP discard port for
floods. Client sub-commands ``rtt``, ``udp``, ``bulk`` and ``flood`` print one JSON
document. Both ends use CLOCK_MONOTONIC of the same kernel, so one-way delays are measured
directly. UDP probes are stamped on arrival by the kernel (SO_TIMESTAMPNS: when the packet
reached the socket), not when a Python thread got round to reading it, so the probes' own
wake-up latency on a loaded machine is not counted as path delay.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import threading
import time
from typing import Any

ECHO_SIZE = 64
# session id, sequence, client send time, server arrival (kernel stamp), server reply send time
UDP_FMT = "!QIddd"
UDP_SIZE = 64
SO_TIMESTAMPNS = 35  # asm-generic/socket.h (SO_TIMESTAMPNS_OLD); absent from Python's socket
_TIMESPEC = struct.Struct("@qq")
CHUNK = 64 * 1024
TIMELINE_STEP_S = 0.02


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise ConnectionError("peer closed")
        buf += b
    return buf


def _readline(s: socket.socket) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        buf += b
    return buf.decode().strip()


class Timeline:
    """Cumulative bytes received, sampled every TIMELINE_STEP_S (first sample: first byte)."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []
        self.total = 0
        self._next = 0.0

    def add(self, n: int) -> None:
        now = time.monotonic()
        self.total += n
        if not self.points:
            self.points.append((now, 0))
            self._next = now
        if now >= self._next:
            self.points.append((now, self.total))
            self._next = now + TIMELINE_STEP_S

    def close(self) -> list[tuple[float, int]]:
        if self.points and self.points[-1][1] != self.total:
            self.points.append((time.monotonic(), self.total))
        return self.points


def stamp_arrivals(sock: socket.socket, wait_s: float = 2.0) -> None:
    """Ask the kernel to stamp every datagram this socket receives (CLOCK_REALTIME, ns), and
    wait (at most ``wait_s``) until it does.

    Why wait: when no socket of the machine has asked for stamps, the kernel switches
    arrival stamping on in a deferred work item, and a datagram that arrives before that ran
    is stamped when it is read (seen in CI under load: a datagram read 0.2 s late carried its
    read time). ``sock`` keeps stamping on once it is; a loopback datagram stamped before its
    ``send`` returned shows that it is. Where loopback is unusable (its device down in a
    namespace) nothing is checked."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return
    with rx, tx:
        try:
            rx.bind(("127.0.0.1", 0))
            rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            rx.settimeout(wait_s)
            end = time.monotonic() + wait_s
            while time.monotonic() < end:
                tx.sendto(b"s", rx.getsockname())
                returned = time.time()
                stamp = _kernel_stamp(rx.recvmsg(64, socket.CMSG_SPACE(_TIMESPEC.size))[1])
                if stamp is not None and stamp < returned:  # stamped on arrival
                    return
                time.sleep(0.001)  # let the kernel's work item run
        except OSError:
            return


def _kernel_stamp(anc: list[tuple[int, int, bytes]]) -> float | None:
    """The SO_TIMESTAMPNS stamp in a message's ancillary data (CLOCK_REALTIME), if any."""
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(raw)
            return float(sec + nsec / 1e9)
    return None


def recv_stamped(sock: socket.socket, size: int) -> tuple[bytes, Any, float]:
    """(data, address, arrival on CLOCK_MONOTONIC) of one datagram; the kernel's arrival
    stamp is carried over to the monotonic clock by its age, so clock steps do not matter.
    Without a stamp (not enabled) the arrival is the time the read returned."""
    data, anc, _flags, addr = sock.recvmsg(size, socket.CMSG_SPACE(_TIMESPEC.size))
    mono, real = time.monotonic(), time.time()
    stamp = _kernel_stamp(anc)
    return data, addr, mono if stamp is None else mono - max(0.0, real - stamp)


def one_way_ms(probes: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """(up, down) one-way delays in ms of the probes that made each leg."""
    up = [(p["srv"] - p["sent"]) * 1e3 for p in probes if p["srv"] is not None]
    down = [(p["back"] - p["srv_send"]) * 1e3 for p in probes
            if p["srv"] is not None and p["back"] is not None]
    return up, down


# ------------------------------------------------------------------------------- server

class Server:
    """The probe server of one pod: TCP commands and a UDP echo on the same port number."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.udp_seen: dict[int, dict[int, float]] = {}
        self.lock = threading.Lock()

    def serve(self) -> None:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("0.0.0.0", self.port))
        tcp.listen(64)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        udp.bind(("0.0.0.0", self.port))
        stamp_arrivals(udp)
        threading.Thread(target=self.udp_loop, args=(udp,), daemon=True).start()
        # port+1: a UDP discard port that is never read (floods end here, no ICMP back)
        self.discard = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.discard.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.discard.bind(("0.0.0.0", self.port + 1))
        print("READY", flush=True)
        while True:
            conn, _ = tcp.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def udp_loop(self, udp: socket.socket) -> None:
        while True:
            data, addr, arrived = recv_stamped(udp, 2048)
            if len(data) < struct.calcsize(UDP_FMT):
                continue
            sid, seq, t_send, _, _ = struct.unpack_from(UDP_FMT, data)
            with self.lock:
                self.udp_seen.setdefault(sid, {})[seq] = arrived
            out = struct.pack(UDP_FMT, sid, seq, t_send, arrived, time.monotonic())
            udp.sendto(out.ljust(UDP_SIZE, b"\0"), addr)

    def handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            cmd = _readline(conn).split()
            if not cmd:
                return
            if cmd[0] == "ECHO":
                while True:
                    conn.sendall(_recv_exact(conn, ECHO_SIZE))
            elif cmd[0] == "SINK":
                tl = Timeline()
                while True:
                    b = conn.recv(CHUNK)
                    if not b:
                        break
                    tl.add(len(b))
                conn.sendall(json.dumps({"timeline": tl.close()}).encode())
            elif cmd[0] == "SOURCE":
                end = time.monotonic() + float(cmd[1])
                payload = b"\0" * CHUNK
                while time.monotonic() < end:
                    conn.sendall(payload)
            elif cmd[0] == "UDPSTAT":
                with self.lock:
                    seen = self.udp_seen.pop(int(cmd[1]), {})
                conn.sendall(json.dumps({str(k): v for k, v in seen.items()}).encode())
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()


# ------------------------------------------------------------------------------- client

def _connect(host: str, port: int, cmd: str) -> socket.socket:
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"{cmd}\n".encode())
    return s


def measure_rtt(host: str, port: int, n: int, conns: int, spacing_ms: float
                ) -> dict[str, Any]:
    """n request/response round trips over ``conns`` TCP connections, closed loop each.

    All connections draw their send times from one grid: consecutive requests (of any
    connection) leave at least ``spacing_ms`` apart, so no probe queues behind another in the
    delay line's FIFO and each sample sees the configured delay distribution.
    """
    out: list[float] = []
    lock = threading.Lock()
    slot = [time.monotonic()]
    left = [n]
    errors: list[str] = []

    def next_slot() -> float | None:
        with lock:
            if left[0] <= 0:
                return None
            left[0] -= 1
            slot[0] = max(time.monotonic(), slot[0] + spacing_ms / 1e3)
            return slot[0]

    def worker() -> None:
        try:
            s = _connect(host, port, "ECHO")
            msg = b"x" * ECHO_SIZE
            s.sendall(msg)  # handshake and a first round trip, not measured
            _recv_exact(s, ECHO_SIZE)
            mine = []
            while (t := next_slot()) is not None:
                wait = t - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                t0 = time.monotonic()
                s.sendall(msg)
                _recv_exact(s, ECHO_SIZE)
                mine.append((time.monotonic() - t0) * 1e3)
            s.close()
            with lock:
                out.extend(mine)
        except OSError as e:
            errors.append(str(e))

    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"rtt_ms": out, "errors": errors}


def measure_udp(host: str, port: int, n: int, interval_ms: float, drain_s: float
                ) -> dict[str, Any]:
    """Send n UDP probes at a fixed interval; collect echoes; ask the server what arrived."""
    sid = random.getrandbits(48)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect((host, port))
    stamp_arrivals(s)
    sent: dict[int, float] = {}
    back: dict[int, tuple[float, float]] = {}
    done = threading.Event()

    def rx() -> None:
        s.settimeout(0.05)
        while not done.is_set():
            try:
                data, _, arrived = recv_stamped(s, 2048)
            except TimeoutError:
                continue
            sid2, seq, _t_send, _t_srv, t_reply = struct.unpack_from(UDP_FMT, data)
            if sid2 == sid:
                back[seq] = (t_reply, arrived)

    t = threading.Thread(target=rx)
    t.start()
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + i * interval_ms / 1e3
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        sent[i] = now
        s.send(struct.pack(UDP_FMT, sid, i, now, 0.0, 0.0).ljust(UDP_SIZE, b"\0"))
    end = time.monotonic() + drain_s
    while time.monotonic() < end and len(back) < n:
        time.sleep(0.01)
    done.set()
    t.join()
    c = _connect(host, port, f"UDPSTAT {sid}")
    raw = b""
    while True:
        b = c.recv(CHUNK)
        if not b:
            break
        raw += b
    c.close()
    arrived = {int(k): float(v) for k, v in json.loads(raw).items()}
    probes = [{"seq": i, "sent": sent[i], "srv": arrived.get(i),
               "srv_send": back[i][0] if i in back else None,
               "back": back[i][1] if i in back else None} for i in range(n)]
    return {"probes": probes}


def measure_bulk(host: str, port: int, direction: str, seconds: float) -> dict[str, Any]:
    """Bulk TCP for ``seconds``: ``up`` = this pod sends, ``down`` = the server sends.
    Returns the receiver's arrival timeline."""
    if direction == "up":
        s = _connect(host, port, "SINK")
        end = time.monotonic() + seconds
        payload = b"\0" * CHUNK
        while time.monotonic() < end:
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        raw = b""
        while True:
            b = s.recv(CHUNK)
            if not b:
                break
            raw += b
        s.close()
        return {"timeline": json.loads(raw)["timeline"]}
    s = _connect(host, port, f"SOURCE {seconds}")
    tl = Timeline()
    while True:
        b = s.recv(CHUNK)
        if not b:
            break
        tl.add(len(b))
    s.close()
    return {"timeline": tl.close()}


def flood(host: str, port: int, pps: float, seconds: float, size: int) -> dict[str, Any]:
    """Send UDP datagrams of ``size`` bytes at ``pps`` for ``seconds`` to the discard port
    (paced in 1 ms batches); report what was really sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port + 1))
    payload = b"\0" * size
    t0 = time.monotonic()
    sent = errors = 0
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        due = int((now - t0) * pps) - sent
        for _ in range(max(0, due)):
            try:
                s.send(payload)
                sent += 1
            except OSError:
                errors += 1
                break
        if due <= 0:
            time.sleep(0.0005)
    dt = time.monotonic() - t0
    return {"sent": sent, "errors": errors, "seconds": dt, "pps": sent / dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m k8s_fixtures.netem.probe")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("server")
    sv.add_argument("--port", type=int, default=5201)
    fl = sub.add_parser("flood")
    fl.add_argument("--host", required=True)
    fl.add_argument("--port", type=int, default=5201)
    fl.add_argument("--pps", type=float, required=True)
    fl.add_argument("--seconds", type=float, default=2.0)
    fl.add_argument("--size", type=int, default=64)
    for name in ("rtt", "udp", "bulk"):
        p = sub.add_parser(name)
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, default=5201)
        if name == "rtt":
            p.add_argument("--n", type=int, default=200)
            p.add_argument("--conns", type=int, default=4)
            p.add_argument("--spacing-ms", type=float, default=2.0)
        elif name == "udp":
            p.add_argument("--n", type=int, default=1000)
            p.add_argument("--interval-ms", type=float, default=1.0)
            p.add_argument("--drain-s", type=float, default=2.0)
        else:
            p.add_argument("--direction", choices=("up", "down"), required=True)
            p.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    if a.cmd == "server":
        Server(a.port).serve()
        return 0
    if a.cmd == "flood":
        res = flood(a.host, a.port, a.pps, a.seconds, a.size)
    elif a.cmd == "rtt":
        res = measure_rtt(a.host, a.port, a.n, a.conns, a.spacing_ms)
    elif a.cmd == "udp":
        res = measure_udp(a.host, a.port, a.n, a.interval_ms, a.drain_s)
    else:
        res = measure_bulk(a.host, a.port, a.direction, a.seconds)
    json.dump(res, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
