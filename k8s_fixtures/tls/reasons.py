"""The shared vocabulary of mTLS refusal reasons, whichever side (gRPC core, stunnel) logged them.

A proof or an event records a :class:`HandshakeFailure`: a stable ``reason`` code (below), the
library's own error string as ``detail``, and the raw log ``line`` it came from. The reasons map
onto the ``mtls`` failure class of the workload's events.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_CLIENT_CERT = "no_client_cert"  # the peer sent no certificate but one is required
UNKNOWN_CA = "unknown_ca"  # the peer's certificate does not chain to our CA
EXPIRED = "expired"  # the peer's certificate is past notAfter
NOT_YET_VALID = "not_yet_valid"  # the peer's certificate is before notBefore
IDENTITY_REJECTED = "identity_rejected"  # valid chain, but the identity is not allowed
NOT_TLS = "not_tls"  # the peer spoke plaintext (or another protocol) to a TLS port
PEER_ALERT = "peer_alert"  # the peer aborted the handshake (it rejected *our* certificate)
VERIFY_FAILED = "verify_failed"  # any other certificate verification failure
HANDSHAKE_FAILED = "handshake_failed"  # any other TLS handshake failure

REASONS = (NO_CLIENT_CERT, UNKNOWN_CA, EXPIRED, NOT_YET_VALID, IDENTITY_REJECTED, NOT_TLS,
           PEER_ALERT, VERIFY_FAILED, HANDSHAKE_FAILED)


@dataclass(frozen=True)
class HandshakeFailure:
    """One refused handshake as read from a server-side log."""

    reason: str
    detail: str
    line: str
    peer: str = ""  # the peer's address, where the log names it (stunnel does, gRPC does not)
    subject: str = ""  # the rejected certificate's subject, where the log names it


def verify_reason(text: str) -> str:
    """Map an OpenSSL/BoringSSL X509 verify error string to a reason code."""
    t = text.lower()
    if "certificate has expired" in t:
        return EXPIRED
    if "not yet valid" in t:
        return NOT_YET_VALID
    if ("unable to get local issuer" in t or "self-signed certificate" in t
            or "self signed certificate" in t or "unable to get issuer" in t
            or "certificate signature failure" in t):
        return UNKNOWN_CA
    return VERIFY_FAILED
