"""Native gRPC mTLS with real grpcio: who gets in, what the server sees, what it logs on refusal.

The server is the probe program in a subprocess (so its gRPC core stderr is its own file);
the clients run in this process. Times are printed, not asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from tls_helpers import PKI, Procs, read_until

from k8s_fixtures.tls import reasons as r
from k8s_fixtures.tls.grpc_log import grpc_handshake_failures
from k8s_fixtures.tls.native import channel_credentials, server_env
from k8s_fixtures.tls.probe import GRPC_OPTIONS, SERVICE, probe_argv
from k8s_fixtures.tls.secret import TLSFiles

SERVER_NAME = "fl-server.ztfl-run.svc.cluster.local"


def start_server(procs: Procs, files: TLSFiles, log: Path) -> int:
    argv = probe_argv("grpc-server", "--bind", "127.0.0.1", "--port", "0", "--workers", "2",
                      "--tls-cert", str(files.cert), "--tls-key", str(files.key),
                      "--tls-ca", str(files.ca))
    with open(log, "wb") as err:
        p = procs.add(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err,
                                       env=server_env(os.environ)))
    assert p.stdout is not None
    line = p.stdout.readline()  # the server prints its port once it is serving
    assert line, f"probe grpc-server exited: {log.read_text()[-500:]}"
    return int(json.loads(line)["listening"])


def channel(port: int, files: TLSFiles | None, ca_pem: bytes) -> grpc.Channel:
    creds = channel_credentials(files, ca_pem)
    opts = [*GRPC_OPTIONS, ("grpc.ssl_target_name_override", SERVER_NAME)]
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=opts)


def upload(ch: grpc.Channel, payload: bytes = b"x") -> dict[str, object]:
    reply: bytes = ch.unary_unary(f"/{SERVICE}/Upload")(payload, timeout=5)
    return json.loads(reply)  # type: ignore[no-any-return]


def test_valid_client_is_identified_and_timed(pki: PKI, procs: Procs, tmp_path: Path) -> None:
    port = start_server(procs, pki.server, tmp_path / "server.err")
    t0 = time.perf_counter()
    with channel(port, pki.client, pki.ca.cert_pem) as ch:
        first = upload(ch)
        t_first = time.perf_counter() - t0
        warm = []
        for _ in range(20):
            t = time.perf_counter()
            upload(ch)
            warm.append(time.perf_counter() - t)
    assert first == {"n": 1, "peer": [pki.client_id]}
    print(f"\nnative mTLS: first RPC (connect+handshake) {t_first * 1e3:.2f} ms, "
          f"warm RPC median {statistics.median(warm) * 1e3:.3f} ms (n={len(warm)})")


def test_auth_context_keys(pki: PKI, procs: Procs, tmp_path: Path) -> None:
    """Pin which auth_context keys carry the SPIFFE id (in-process server)."""
    from concurrent import futures

    from k8s_fixtures.tls.native import server_credentials

    seen: dict[str, list[bytes]] = {}

    def handler(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        seen.update(ctx.auth_context())
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(1))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "t.T", {"M": grpc.unary_unary_rpc_method_handler(handler)}),))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(pki.server))
    server.start()
    try:
        with channel(port, pki.client, pki.ca.cert_pem) as ch:
            ch.unary_unary("/t.T/M")(b"", timeout=5)
    finally:
        server.stop(None)
    sid = pki.client_id.encode()
    assert seen["peer_spiffe_id"] == [sid]
    assert sid in seen["x509_subject_alternative_name"]
    assert seen["peer_uri"] == [sid]
    assert seen["ssl_tls_version"] == [b"TLSv1.3"]


@pytest.mark.parametrize(("case", "reason"), [
    ("none", r.NO_CLIENT_CERT), ("other_ca", r.UNKNOWN_CA), ("expired", r.EXPIRED),
    ("not_yet_valid", r.NOT_YET_VALID), ("plaintext", r.NOT_TLS)])
def test_refused_and_reason_from_server_log(pki: PKI, procs: Procs, tmp_path: Path,
                                            case: str, reason: str) -> None:
    log = tmp_path / "server.err"
    port = start_server(procs, pki.server, log)
    if case == "plaintext":
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    else:
        files = None if case == "none" else getattr(pki, case)
        ch = channel(port, files, pki.ca.cert_pem)
    with ch, pytest.raises(grpc.RpcError) as e:
        upload(ch)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE  # all the client learns
    text = read_until(log, lambda t: bool(grpc_handshake_failures(t)))
    got = grpc_handshake_failures(text)
    assert {f.reason for f in got} == {reason}, got
