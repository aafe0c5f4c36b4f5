"""Certificates as Kubernetes ``v1 Secret`` objects (type kubernetes.io/tls) and as files.

A Secret holds ``tls.crt``, ``tls.key`` and ``ca.crt`` (base64, as the API server stores them);
the same three files are what a pod mounts and what the workload's ``--tls-cert/--tls-key/
--tls-ca`` flags or a sidecar proxy's config point at. Secrets are plain dicts, so every backend
(local, kind, a real cluster) gets the same object.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ca import IssuedCert
from .validate import CertificateError, CertInfo, validate_pair

SECRET_TYPE = "kubernetes.io/tls"
CERT_KEY, KEY_KEY, CA_KEY = "tls.crt", "tls.key", "ca.crt"
ANNOTATION_SPIFFE = "ztfl.io/spiffe-id"
ANNOTATION_NOT_AFTER = "ztfl.io/not-after"


@dataclass(frozen=True)
class TLSFiles:
    """Paths of a pod's mounted certificate, key and CA bundle."""

    cert: Path
    key: Path
    ca: Path


def secret_name(service_account: str) -> str:
    """The name of a ServiceAccount's TLS Secret (what a pod of that account mounts)."""
    return f"{service_account}-mtls"


def mounted_files(directory: Path) -> TLSFiles:
    """The paths of a TLS Secret's three keys when its volume is mounted at ``directory``."""
    return TLSFiles(directory / CERT_KEY, directory / KEY_KEY, directory / CA_KEY)


def to_secret(issued: IssuedCert, *, name: str | None = None,
              labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``v1 Secret`` of type kubernetes.io/tls for ``issued`` in its identity's namespace."""
    ident = issued.identity
    enc = {k: base64.b64encode(v).decode() for k, v in
           ((CERT_KEY, issued.cert_pem), (KEY_KEY, issued.key_pem), (CA_KEY, issued.ca_pem))}
    meta: dict[str, Any] = {
        "name": name or secret_name(ident.service_account),
        "namespace": ident.namespace,
        "annotations": {ANNOTATION_SPIFFE: ident.spiffe_id,
                        ANNOTATION_NOT_AFTER: issued.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": SECRET_TYPE,
            "data": enc}


def secret_ref(secret: dict[str, Any]) -> str:
    meta = secret.get("metadata") or {}
    return f"Secret {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def secret_material(secret: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    """(tls.crt, tls.key, ca.crt) decoded from a Secret; errors name the Secret."""
    ref = secret_ref(secret)
    if secret.get("kind") != "Secret" or secret.get("type") != SECRET_TYPE:
        raise CertificateError(f"{ref}: not a v1 Secret of type {SECRET_TYPE}")
    data = secret.get("data") or {}
    out = []
    for k in (CERT_KEY, KEY_KEY, CA_KEY):
        if k not in data:
            raise CertificateError(f"{ref}: missing data key {k!r}")
        try:
            out.append(base64.b64decode(data[k], validate=True))
        except (ValueError, TypeError):
            raise CertificateError(f"{ref}: data[{k!r}] is not valid base64") from None
    return out[0], out[1], out[2]


def validate_secret(secret: dict[str, Any], *, now: dt.datetime | None = None) -> CertInfo:
    """Validate a Secret's material (see :func:`validate_pair`); errors name the Secret."""
    cert, key, ca = secret_material(secret)
    return validate_pair(cert, key, ca, name=secret_ref(secret), now=now)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def write_material(cert: bytes, key: bytes, ca: bytes, directory: Path) -> TLSFiles:
    """Write the three PEM files into ``directory`` (key 0600), as a Secret volume mount."""
    directory.mkdir(parents=True, exist_ok=True)
    files = mounted_files(directory)
    _write(files.cert, cert, 0o644)
    _write(files.key, key, 0o600)
    _write(files.ca, ca, 0o644)
    return files


def write_files(issued: IssuedCert, directory: Path) -> TLSFiles:
    return write_material(issued.cert_pem, issued.key_pem, issued.ca_pem, directory)


def mount_secret(secret: dict[str, Any], directory: Path) -> TLSFiles:
    """Write a Secret's data into ``directory`` the way a kubelet mounts it."""
    return write_material(*secret_material(secret), directory)
