"""Validation of certificate material before it is used: one-line errors naming the object.

Checks, in order: the PEM parses; the CA itself is within its validity window; the leaf is
within its window (expired / not yet valid); the private key matches the certificate; the
certificate was signed by the given CA. ``name`` is what the error names (e.g. ``Secret
ztfl-run/fl-client-0-tls`` or a file path), so a failed cell says exactly which object is bad.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

SPIFFE_PREFIX = "spiffe://"


class CertificateError(ValueError):
    """Certificate material is unusable; the message is one line and names the object."""


def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CertInfo:
    """What a validated leaf says about itself."""

    subject: str
    spiffe_ids: tuple[str, ...]
    dns_names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime


def _load_cert(pem: bytes, name: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise CertificateError(f"{name}: {what} is not a PEM certificate ({e})") from None


def _check_window(cert: x509.Certificate, now: dt.datetime, name: str, what: str) -> None:
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= na:
        raise CertificateError(f"{name}: {what} expired at {_ts(na)} (now {_ts(now)})")
    if now < nb:
        raise CertificateError(f"{name}: {what} is not yet valid: valid from {_ts(nb)} "
                               f"(now {_ts(now)})")


def cert_info(cert: x509.Certificate) -> CertInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                     if u.startswith(SPIFFE_PREFIX))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        uris, dns = (), ()
    return CertInfo(subject=cert.subject.rfc4514_string(), spiffe_ids=uris, dns_names=dns,
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def validate_pair(cert_pem: bytes, key_pem: bytes, ca_pem: bytes, *, name: str,
                  now: dt.datetime | None = None, require_spiffe: bool = True) -> CertInfo:
    """Raise :class:`CertificateError` unless the cert/key pair is usable under ``ca_pem``."""
    now = now or dt.datetime.now(dt.UTC)
    ca = _load_cert(ca_pem, name, "ca.crt")
    cert = _load_cert(cert_pem, name, "certificate")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"{name}: private key is not an unencrypted PEM key ({e})") from None
    _check_window(ca, now, name, f"CA certificate ({ca.subject.rfc4514_string()})")
    _check_window(cert, now, name, "certificate")
    pub = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*pub) != cert.public_key().public_bytes(*pub):
        raise CertificateError(f"{name}: private key does not match the certificate "
                               f"({cert.subject.rfc4514_string()})")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError(
            f"{name}: certificate (issuer {cert.issuer.rfc4514_string()}) is not signed by the "
            f"given CA ({ca.subject.rfc4514_string()})") from None
    info = cert_info(cert)
    if require_spiffe and not info.spiffe_ids:
        raise CertificateError(f"{name}: certificate has no SPIFFE URI SAN")
    return info
