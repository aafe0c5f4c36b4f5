"""Read mTLS refusal reasons from a gRPC (grpcio, C core) server process's stderr.

A gRPC client refused by an mTLS server only sees ``UNAVAILABLE: ... Socket closed``; the reason
is logged by the *server's* gRPC core. Measured with grpcio 1.85.3 (BoringSSL, one line per
refused handshake, no peer address)::

  I1127 12:35:26.741658 6349 ssl_transport_security.cc:2563] Handshake failed with error
      SSL_ERROR_SSL: error:100000c0:SSL routines:OPENSSL_internal:
      PEER_DID_NOT_RETURN_A_CERTIFICATE: Invalid certificate verification context   (no cert)
  ... CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate            (other CA)
  ... CERTIFICATE_VERIFY_FAILED: certificate has expired                            (expired)
  ... CERTIFICATE_VERIFY_FAILED: certificate is not yet valid                (not yet valid)
  ... WRONG_VERSION_NUMBER                                               (plaintext client)

These are INFO lines: they are printed with ``GRPC_VERBOSITY`` unset or INFO/DEBUG, and
*suppressed* by ``GRPC_VERBOSITY=ERROR`` or ``NONE``. Start the server with
:data:`GRPC_SERVER_LOG_ENV` so an inherited setting cannot hide them (INFO adds one harmless
"Log level INFO is not suitable for production" warning line at start-up). No GRPC_TRACE flag
is needed.
"""

from __future__ import annotations

import re

from .reasons import (
    HANDSHAKE_FAILED,
    NO_CLIENT_CERT,
    NOT_TLS,
    HandshakeFailure,
    verify_reason,
)

GRPC_SERVER_LOG_ENV: dict[str, str] = {"GRPC_VERBOSITY": "INFO"}

_LINE = re.compile(r"Handshake failed with error (?P<err>\S+): (?P<detail>.*)$")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG",
            "RECORD_TOO_LARGE")


def _classify(detail: str) -> str:
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in detail:
        return NO_CLIENT_CERT
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        return verify_reason(detail.split("CERTIFICATE_VERIFY_FAILED", 1)[1])
    if any(tag in detail for tag in _NOT_TLS):
        return NOT_TLS
    return HANDSHAKE_FAILED


def grpc_handshake_failures(stderr_text: str) -> list[HandshakeFailure]:
    """Every refused handshake in a gRPC server's stderr, in log order."""
    out = []
    for line in stderr_text.splitlines():
        m = _LINE.search(line)
        if m:
            detail = m.group("detail").strip()
            out.append(HandshakeFailure(_classify(detail), detail, line.strip()))
    return out
