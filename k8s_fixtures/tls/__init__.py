"""mTLS for SEC2/SEC3: the harness CA, certificates as Secrets, native and sidecar modes, proofs.

Modules, one job each: :mod:`.ca` (issue), :mod:`.validate` (check), :mod:`.secret` (Secret
objects and files), :mod:`.native` (workload flags, gRPC credentials), :mod:`.sidecar`
(stunnel + nftables per pod), :mod:`.capture` and :mod:`.pcap` (no plaintext on the wire),
:mod:`.grpc_log` and :mod:`.stunnel_log` (refusal reasons, vocabulary in :mod:`.reasons`),
:mod:`.mesh` (Linkerd's objects for mode ``mesh``) and :mod:`.linkerd_metrics` (its proxy's
allow/deny counters). See README.md in this directory.
"""

from .ca import CertificateAuthority, IssuedCert, WorkloadIdentity, service_dns_names
from .reasons import HandshakeFailure
from .secret import TLSFiles, mount_secret, to_secret, validate_secret, write_files
from .validate import CertificateError, validate_pair

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
