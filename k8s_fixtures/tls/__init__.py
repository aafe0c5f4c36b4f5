"""mTLS for SEC2/SEC3: the harness CA, certificates as Secrets, native and sidecar modes, proofs.

Modules, one job each: :mod:`.ca` (issue), :mod:`.validate` (check), :mod:`.secret` (Secret
objects and files), :mod:`.native` (workload flags, gRPC credentials), :mod:`.sidecar`
(stunnel + nftables per pod), :mod:`.capture` and :mod:`.pcap` (no plaintext on the wire),
:mod:`.grpc_log` and :mod:`.stunnel_log` (refusal reasons, vocabulary in :mod:`.reasons`),
:mod:`.mesh` (Linkerd's objects for mode ``mesh``) and :mod:`.linkerd_metrics` (its proxy's
allow/deny counters). See README.md in this directory.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ca import CertificateAuthority, IssuedCert, WorkloadIdentity, service_dns_names
    from .reasons import HandshakeFailure
    from .secret import TLSFiles, mount_secret, to_secret, validate_secret, write_files
    from .validate import CertificateError, validate_pair

# Loaded on first use (PEP 562): ``python -m k8s_fixtures.tls.probe connect`` runs in pods
# dozens of times per cell and needs none of them (``cryptography`` alone is ~45 ms to import).
_FROM = {
    "CertificateAuthority": "ca", "IssuedCert": "ca", "WorkloadIdentity": "ca",
    "service_dns_names": "ca", "HandshakeFailure": "reasons", "TLSFiles": "secret",
    "mount_secret": "secret", "to_secret": "secret", "validate_secret": "secret",
    "write_files": "secret", "CertificateError": "validate", "validate_pair": "validate",
}


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)


__all__ = [
    "CertificateAuthority",
    "CertificateError",
    "HandshakeFailure",
    "IssuedCert",
    "TLSFiles",
    "WorkloadIdentity",
    "mount_secret",
    "service_dns_names",
    "to_secret",
    "validate_pair",
    "validate_secret",
    "write_files",
]
