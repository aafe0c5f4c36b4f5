"""The harness CA: SANs, lifetimes, Secrets, files, and validation errors that name the object."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from k8s_fixtures.tls.ca import CertificateAuthority, service_dns_names
from k8s_fixtures.tls.secret import mount_secret, to_secret, validate_secret, write_files
from k8s_fixtures.tls.sidecar import identity_dns_from_spiffe
from k8s_fixtures.tls.validate import CertificateError, validate_pair

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(now=NOW)


@pytest.fixture(scope="module")
def other() -> CertificateAuthority:
    return CertificateAuthority.create("other CA", now=NOW)


def test_leaf_carries_spiffe_and_service_names(ca: CertificateAuthority) -> None:
    ident = ca.identity("ztfl-run", "fl-server")
    issued = ca.issue(ident, dns_names=service_dns_names("fl-server", "ztfl-run"), now=NOW)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/ztfl-run/sa/fl-server"]
    assert san.get_values_for_type(x509.DNSName) == [
        "fl-server.ztfl-run.serviceaccount.identity.cluster.local",
        "fl-server.ztfl-run.svc.cluster.local", "fl-server.ztfl-run.svc", "fl-server"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_after_utc - NOW == dt.timedelta(hours=24)
    assert cert.not_valid_before_utc < NOW
    assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert identity_dns_from_spiffe(issued.spiffe_id) == ident.identity_dns
    info = validate_pair(issued.cert_pem, issued.key_pem, issued.ca_pem, name="x", now=NOW)
    assert info.spiffe_ids == (issued.spiffe_id,)


def test_secret_shape_and_mount_round_trip(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue(ca.identity("ztfl-run", "fl-client-0"), now=NOW)
    s = to_secret(issued, labels={"app": "fl-client"})
    assert s["apiVersion"] == "v1" and s["kind"] == "Secret"
    assert s["type"] == "kubernetes.io/tls"
    assert s["metadata"]["name"] == "fl-client-0-mtls"
    assert s["metadata"]["namespace"] == "ztfl-run"
    assert set(s["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert base64.b64decode(s["data"]["tls.crt"]) == issued.cert_pem
    assert validate_secret(s, now=NOW).spiffe_ids == (issued.spiffe_id,)
    files = mount_secret(s, tmp_path / "m")
    assert files.cert.read_bytes() == issued.cert_pem
    assert files.key.stat().st_mode & 0o777 == 0o600
    assert write_files(issued, tmp_path / "w").ca.read_bytes() == ca.cert_pem


def _one_line(e: pytest.ExceptionInfo[CertificateError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_expired_and_not_yet_valid_name_the_secret(ca: CertificateAuthority) -> None:
    ident = ca.identity("ztfl-run", "fl-client-1")
    old = ca.issue(ident, not_before=NOW - dt.timedelta(days=2),
                   not_after=NOW - dt.timedelta(days=1))
    with pytest.raises(CertificateError) as e:
        validate_secret(to_secret(old), now=NOW)
    assert _one_line(e).startswith("Secret ztfl-run/fl-client-1-mtls: certificate expired at ")
    future = ca.issue(ident, not_before=NOW + dt.timedelta(hours=1))
    with pytest.raises(CertificateError) as e:
        validate_secret(to_secret(future), now=NOW)
    assert "Secret ztfl-run/fl-client-1-mtls: certificate is not yet valid" in _one_line(e)


def test_key_mismatch_and_foreign_ca(ca: CertificateAuthority,
                                     other: CertificateAuthority) -> None:
    a = ca.issue(ca.identity("n", "a"), now=NOW)
    b = ca.issue(ca.identity("n", "b"), now=NOW)
    with pytest.raises(CertificateError) as e:
        validate_pair(a.cert_pem, b.key_pem, a.ca_pem, name="pod/a", now=NOW)
    assert _one_line(e).startswith("pod/a: private key does not match the certificate")
    foreign = other.issue(other.identity("n", "a"), now=NOW)
    with pytest.raises(CertificateError) as e:
        validate_pair(foreign.cert_pem, foreign.key_pem, ca.cert_pem, name="pod/a", now=NOW)
    assert "is not signed by the given CA (CN=ztfl harness CA)" in _one_line(e)


def test_broken_secrets_are_named(ca: CertificateAuthority) -> None:
    s = to_secret(ca.issue(ca.identity("n", "a"), now=NOW))
    del s["data"]["ca.crt"]
    with pytest.raises(CertificateError, match=r"^Secret n/a-mtls: missing data key 'ca.crt'$"):
        validate_secret(s, now=NOW)
    s = to_secret(ca.issue(ca.identity("n", "a"), now=NOW))
    s["data"]["tls.crt"] = base64.b64encode(b"junk").decode()
    with pytest.raises(CertificateError, match=r"^Secret n/a-mtls: certificate is not a PEM"):
        validate_secret(s, now=NOW)


def test_empty_window_is_rejected(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="window is empty"):
        ca.issue(ca.identity("n", "a"), not_before=NOW, not_after=NOW)


@pytest.mark.parametrize("bad", ["spiffe://cluster.local/ns/x", "https://a/ns/b/sa/c",
                                 "spiffe://td/ns//sa/c"])
def test_malformed_spiffe_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="not a workload SPIFFE id"):
        identity_dns_from_spiffe(bad)
