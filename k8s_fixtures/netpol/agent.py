"""The probe agent: one process per pod that serves the model's ports and probes other pods.

Run inside a pod's network namespace::

    python -m k8s_fixtures.netpol.agent --name x/a --serve TCP:80,TCP:81,UDP:80,UDP:81

It serves every given port (TCP: accept, send ``<name>\\n``, close; UDP: answer each datagram
with ``<name>``, the application-level echo UDP probing needs), prints ``{"ready": true}`` on
stdout once bound, then answers JSON-lines requests on stdin::

    {"id": 1, "probes": [{"ip": "10.244.0.3", "port": 80, "protocol": "TCP", "timeout": 1.0}]}
    -> {"id": 1, "results": [{"ok": true, "reply": "x/b", "error": null, "ms": 0.4}]}

Probes of one request run concurrently. UDP probes bind source ports from a rotating range so
that a new probe never reuses the conntrack entry of an earlier one. Exits on stdin EOF.
Standard library only: it must start anywhere a pod's command could.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

UDP_SRC_PORTS = range(20000, 30000)


def _serve_tcp(sock: socket.socket, reply: bytes) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):
            conn.sendall(reply)


def _serve_udp(sock: socket.socket, reply: bytes) -> None:
    while True:
        try:
            _, addr = sock.recvfrom(2048)
            sock.sendto(reply, addr)
        except OSError:
            if sock.fileno() == -1:
                return


def serve(name: str, specs: list[tuple[str, int]]) -> list[socket.socket]:
    reply = name.encode()
    socks = []
    for proto, port in specs:
        if proto == "TCP":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(64)
            target, payload = _serve_tcp, reply + b"\n"
        elif proto == "UDP":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", port))
            target, payload = _serve_udp, reply
        else:
            raise SystemExit(f"agent {name}: cannot serve protocol {proto}")
        threading.Thread(target=target, args=(s, payload), daemon=True).start()
        socks.append(s)
    return socks


class Prober:
    def __init__(self) -> None:
        self._ports = itertools.cycle(UDP_SRC_PORTS)
        self._lock = threading.Lock()

    def _udp_socket(self) -> socket.socket:
        for _ in range(100):
            with self._lock:
                port = next(self._ports)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("0.0.0.0", port))
                return s
            except OSError as e:
                s.close()
                if e.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, "no free UDP source port")

    def probe(self, p: dict[str, Any]) -> dict[str, Any]:
        ip, port, proto, timeout = p["ip"], int(p["port"]), p["protocol"], float(p["timeout"])
        t0 = time.perf_counter()
        reply: str | None = None
        error: str | None = None
        try:
            if proto == "TCP":
                with socket.create_connection((ip, port), timeout=timeout) as s:
                    s.settimeout(timeout)
                    reply = s.recv(256).decode(errors="replace").strip() or None
            elif proto == "UDP":
                with self._udp_socket() as s:
                    s.settimeout(timeout)
                    s.connect((ip, port))
                    s.send(b"probe")
                    reply = s.recv(256).decode(errors="replace") or None
            else:
                error = f"unsupported protocol {proto}"
        except TimeoutError:
            error = "timeout"
        except OSError as e:
            error = errno.errorcode.get(e.errno or 0, str(e))
        ms = (time.perf_counter() - t0) * 1000
        return {"ok": reply is not None, "reply": reply, "error": error, "ms": round(ms, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="netpol-agent")
    ap.add_argument("--name", required=True)
    ap.add_argument("--serve", default="TCP:80,TCP:81,UDP:80,UDP:81")
    args = ap.parse_args(argv)
    specs = []
    for item in filter(None, args.serve.split(",")):
        proto, _, port = item.partition(":")
        specs.append((proto.upper(), int(port)))
    serve(args.name, specs)
    prober = Prober()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            results = list(pool.map(prober.probe, req["probes"]))
            out.write(json.dumps({"id": req.get("id"), "results": results}) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
