"""Probe programs run inside pods by command line: ``python -m k8s_fixtures.tls.probe ...``.

* ``echo-server --bind A --port P``: TCP echo (one thread per connection).
* ``grpc-server --bind A --port P [--tls-cert C --tls-key K --tls-ca CA]``: prints
  ``{"listening": <port>}`` (``--port 0`` picks a free one), then serves a generic gRPC
  service ``/ztfl.probe.v1.Probe/{Echo,Upload}`` (bytes in, bytes out). Upload answers with JSON
  ``{"n": <bytes received>, "peer": [<client SPIFFE ids>]}``. With TLS flags it requires a
  client certificate (mTLS). Logs refusals on stderr (see :mod:`.grpc_log`).
* ``grpc-call --target H:P [--tls-ca CA [--tls-cert C --tls-key K]] [--server-name N]
  [--size N] [--first-size N] [--pattern HEX] [--repeat R]``: one first RPC (connect +
  handshake + call) then ``R`` warm RPCs on the same channel, printing JSON ``{"ok", "code",
  "details", "first_s", "warm_s", "reply"}``.
  Any method reaches the TLS handshake first, so against another gRPC server (the FL server)
  ``UNIMPLEMENTED`` means "TLS accepted" and ``UNAVAILABLE`` means "refused".
* ``tcp-call --target H:P --data HEX``: send, read until EOF, print ``{"ok", "reply", "error"}``.
* ``connect --target H:P [--as-uid U]``: one TCP connect, print ``{"ok", "error"}``. With
  ``--as-uid`` (run as root) it first becomes that user: from a sidecar pod, the proxy's uid
  is the one the outbound redirect lets through, so the connect tests the network itself.

These are the harness's own probes (the workload is never imported). gRPC and the
certificate code are imported only by the commands that use them: the plain TCP ones, the
NetworkPolicy proofs' dozens of execs per cell, start in a third of the time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: ``connect`` and the echo server start without them
    import grpc

    from .secret import TLSFiles

SERVICE = "ztfl.probe.v1.Probe"
MAX_MESSAGE = 64 * 1024 * 1024
GRPC_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE)]


def probe_argv(*args: str) -> list[str]:
    """The command line running this probe with the current interpreter."""
    return [sys.executable, "-m", "k8s_fixtures.tls.probe", *args]


def _identity(b: bytes) -> bytes:
    return b


def _files(ns: argparse.Namespace) -> TLSFiles | None:
    from .secret import TLSFiles

    if ns.tls_cert and ns.tls_key and ns.tls_ca:
        return TLSFiles(Path(ns.tls_cert), Path(ns.tls_key), Path(ns.tls_ca))
    return None


def _echo_conn(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def echo_server(ns: argparse.Namespace) -> int:
    srv = socket.create_server((ns.bind, ns.port), reuse_port=False)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_echo_conn, args=(conn,), daemon=True).start()


def grpc_server(ns: argparse.Namespace) -> int:
    import grpc

    from .native import peer_spiffe_ids, server_credentials

    def echo(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        return req

    def upload(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        peer = peer_spiffe_ids(dict(ctx.auth_context()))
        return json.dumps({"n": len(req), "peer": peer}).encode()

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, _identity, _identity),
        "Upload": grpc.unary_unary_rpc_method_handler(upload, _identity, _identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=ns.workers), options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    files = _files(ns)
    addr = f"{ns.bind}:{ns.port}"
    if files is not None:
        port = server.add_secure_port(addr, server_credentials(files))
    else:
        port = server.add_insecure_port(addr)
    server.start()
    print(json.dumps({"listening": port}), flush=True)
    server.wait_for_termination()
    return 0


def _payload(size: int, pattern: bytes) -> bytes:
    if not pattern:
        return bytes(size)
    return (pattern * (size // len(pattern) + 1))[:size]


def grpc_call(ns: argparse.Namespace) -> int:
    import grpc

    from .native import channel_credentials

    opts: list[tuple[str, Any]] = list(GRPC_OPTIONS)
    if ns.server_name:
        opts.append(("grpc.ssl_target_name_override", ns.server_name))
    payload = _payload(ns.size, bytes.fromhex(ns.pattern))
    first = payload if ns.first_size < 0 else _payload(ns.first_size, bytes.fromhex(ns.pattern))
    out: dict[str, Any] = {"ok": False, "code": "", "details": "", "first_s": None,
                           "warm_s": [], "reply": ""}
    t0 = time.perf_counter()
    if ns.tls_ca:
        creds = channel_credentials(_files(ns), Path(ns.tls_ca).read_bytes())
        channel = grpc.secure_channel(ns.target, creds, options=opts)
    else:
        channel = grpc.insecure_channel(ns.target, options=opts)
    call: Callable[..., bytes] = channel.unary_unary(f"/{SERVICE}/{ns.method}")
    try:
        reply = call(first, timeout=ns.timeout)
        out["first_s"] = time.perf_counter() - t0
        for _ in range(ns.repeat):
            t = time.perf_counter()
            reply = call(payload, timeout=ns.timeout)
            out["warm_s"].append(time.perf_counter() - t)
        out.update(ok=True, code="OK", reply=reply[:200].decode(errors="replace"))
    except grpc.RpcError as e:
        out.update(code=e.code().name, details=e.details() or "")
    finally:
        channel.close()
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


def tcp_call(ns: argparse.Namespace) -> int:
    out: dict[str, Any] = {"ok": False, "reply": "", "error": ""}
    data = bytes.fromhex(ns.data)
    try:
        with socket.create_connection(_hostport(ns.target), timeout=ns.timeout) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        out.update(ok=got == data, reply=got.hex())
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


def connect(ns: argparse.Namespace) -> int:
    """Can a TCP connection be opened at all? (the NetworkPolicy proofs' question)"""
    out: dict[str, Any] = {"ok": False, "error": "", "seconds": None}
    t0 = time.perf_counter()
    try:
        with socket.create_connection(_hostport(ns.target), timeout=ns.timeout):
            out["ok"] = True
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


def _hostport(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m k8s_fixtures.tls.probe")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("echo-server", "grpc-server"):
        s = sub.add_parser(name)
        s.add_argument("--bind", default="0.0.0.0")
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--workers", type=int, default=4)
    for name in ("grpc-server", "grpc-call"):
        s = sub.choices[name] if name in sub.choices else sub.add_parser(name)
        s.add_argument("--tls-cert")
        s.add_argument("--tls-key")
        s.add_argument("--tls-ca")
    g = sub.choices["grpc-call"]
    g.add_argument("--target", required=True)
    g.add_argument("--server-name", default="")
    g.add_argument("--method", default="Upload", choices=["Upload", "Echo"])
    g.add_argument("--size", type=int, default=16)
    g.add_argument("--pattern", default="", help="hex bytes repeated to fill the payload")
    g.add_argument("--first-size", type=int, default=-1,
                   help="payload of the first RPC (default: --size)")
    g.add_argument("--repeat", type=int, default=0)
    g.add_argument("--timeout", type=float, default=10.0)
    c = sub.add_parser("connect")
    c.add_argument("--target", required=True)
    c.add_argument("--timeout", type=float, default=5.0)
    c.add_argument("--as-uid", type=int, default=None, help="become this uid (and gid) first")
    t = sub.add_parser("tcp-call")
    t.add_argument("--target", required=True)
    t.add_argument("--data", required=True, help="hex")
    t.add_argument("--timeout", type=float, default=5.0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if getattr(ns, "as_uid", None) not in (None, os.getuid()):
        # what the connect loads lazily, loaded while this interpreter's files are readable
        # (a root-only install, e.g. under /root, is not readable by the uid taken next)
        import encodings.idna  # noqa: F401

        os.setgroups([])
        os.setgid(ns.as_uid)
        os.setuid(ns.as_uid)
    run: dict[str, Callable[[argparse.Namespace], int]] = {
        "echo-server": echo_server, "grpc-server": grpc_server,
        "grpc-call": grpc_call, "tcp-call": tcp_call, "connect": connect}
    return run[ns.cmd](ns)


if __name__ == "__main__":
    sys.exit(main())
