"""Native mTLS: the workload does TLS itself; the platform only hands it files and flags.

The FL server and clients take ``--tls-cert/--tls-key/--tls-ca``; the server also takes an
allow-list of SPIFFE ids (``--allowed-id``, repeated). The server process must log at INFO
(:data:`.grpc_log.GRPC_SERVER_LOG_ENV`) for refusal reasons to be readable from its stderr.
The gRPC credential helpers here serve the harness's own probes and benchmarks; the workload
itself must not import k8s_fixtures. The flag and environment helpers are the single source for
the manifests (:mod:`k8s_fixtures.workload`), so this module imports grpc only when credentials
are built: rendering objects does not load it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .grpc_log import GRPC_SERVER_LOG_ENV
from .secret import TLSFiles

if TYPE_CHECKING:
    import grpc

ALLOW_FLAG = "--allowed-id"


def tls_args(files: TLSFiles) -> list[str]:
    """The workload flags pointing at a pod's mounted certificate material."""
    return ["--tls-cert", str(files.cert), "--tls-key", str(files.key), "--tls-ca", str(files.ca)]


def server_args(files: TLSFiles, allowed_ids: Iterable[str] = (),
                allow_flag: str = ALLOW_FLAG) -> list[str]:
    """Server flags: TLS files plus one ``--allowed-id`` per allowed client SPIFFE id."""
    out = tls_args(files)
    for sid in allowed_ids:
        out += [allow_flag, sid]
    return out


def server_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the gRPC log settings that make handshake refusals visible on stderr."""
    return {**base, **GRPC_SERVER_LOG_ENV}


def server_credentials(files: TLSFiles) -> grpc.ServerCredentials:
    """gRPC server credentials requiring a client certificate that chains to the CA."""
    import grpc

    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=files.ca.read_bytes(), require_client_auth=True)


def channel_credentials(files: TLSFiles | None, ca_pem: bytes | None = None,
                        ) -> grpc.ChannelCredentials:
    """Client credentials; ``files=None`` gives a client that presents no certificate."""
    import grpc

    if files is None:
        return grpc.ssl_channel_credentials(root_certificates=ca_pem)
    return grpc.ssl_channel_credentials(root_certificates=ca_pem or files.ca.read_bytes(),
                                        private_key=files.key.read_bytes(),
                                        certificate_chain=files.cert.read_bytes())


def peer_spiffe_ids(auth_context: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The peer's SPIFFE ids from a gRPC ``ServicerContext.auth_context()``.

    grpcio 1.85 exposes ``peer_spiffe_id`` (measured; gRPC core derives it from a single
    spiffe:// URI SAN) and ``peer_uri``/``x509_subject_alternative_name`` (all SANs); this falls
    back to the spiffe:// entries of ``peer_uri``.
    """
    ids = [v.decode() for v in auth_context.get("peer_spiffe_id", ())]
    if not ids:
        ids = [v.decode() for v in auth_context.get("peer_uri", ())
               if v.startswith(b"spiffe://")]
    return ids
