"""The harness certificate authority: an EC P-256 CA issuing short-lived workload certificates.

Each leaf certifies one workload identity (a ServiceAccount in a namespace) with the SPIFFE URI
SAN ``spiffe://<trust domain>/ns/<ns>/sa/<sa>``, as Linkerd and Istio do. It also carries the
identity in Linkerd's DNS form ``<sa>.<ns>.serviceaccount.identity.<trust domain>`` so that a
TLS proxy which can only match DNS names (stunnel's ``checkHost``) can still check the peer's
identity, plus any DNS SANs the caller asks for (a server's Service names). Leaves are valid for
both serverAuth and clientAuth. Validity defaults to 24 h; ``not_before``/``not_after`` may be
set freely so tests can issue expired and not-yet-valid certificates. A second, independent CA
is just another :meth:`CertificateAuthority.create`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_LEAF_LIFETIME = dt.timedelta(hours=24)  # as Linkerd's proxy certificates
DEFAULT_CA_LIFETIME = dt.timedelta(days=365)
CLOCK_SKEW = dt.timedelta(minutes=1)  # leaves start slightly in the past, as Linkerd's do
_CN_MAX = 64  # X.520 upper bound for commonName


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class WorkloadIdentity:
    """A Kubernetes workload identity: a ServiceAccount in a namespace."""

    namespace: str
    service_account: str
    trust_domain: str = DEFAULT_TRUST_DOMAIN

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def identity_dns(self) -> str:
        """Linkerd's DNS form of the identity (what stunnel ``checkHost`` can match)."""
        sa, ns, td = self.service_account, self.namespace, self.trust_domain
        return f"{sa}.{ns}.serviceaccount.identity.{td}"


def service_dns_names(service: str, namespace: str, cluster_domain: str = "cluster.local",
                      ) -> list[str]:
    """The names a Service is reached by: ``svc.ns.svc.<domain>``, ``svc.ns.svc``, ``svc``."""
    return [f"{service}.{namespace}.svc.{cluster_domain}", f"{service}.{namespace}.svc", service]


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate with its key and the CA bundle its peers verify it against (PEM)."""

    identity: WorkloadIdentity
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...] = ()

    @property
    def spiffe_id(self) -> str:
        return self.identity.spiffe_id


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_CN_MAX])])


def _window(now: dt.datetime | None, lifetime: dt.timedelta, not_before: dt.datetime | None,
            not_after: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    start = not_before if not_before is not None else (now or utcnow()) - CLOCK_SKEW
    end = not_after if not_after is not None else start + CLOCK_SKEW + lifetime
    if end <= start:
        raise ValueError(f"certificate window is empty: not_before {start} >= not_after {end}")
    return start, end


class CertificateAuthority:
    """A self-signed EC P-256 root that issues workload leaves (see module docstring)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate,
                 trust_domain: str = DEFAULT_TRUST_DOMAIN) -> None:
        self.key = key
        self.cert = cert
        self.trust_domain = trust_domain

    @classmethod
    def create(cls, name: str = "ztfl harness CA", *,
               trust_domain: str = DEFAULT_TRUST_DOMAIN,
               lifetime: dt.timedelta = DEFAULT_CA_LIFETIME,
               not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
               now: dt.datetime | None = None, path_length: int | None = 0,
               ) -> CertificateAuthority:
        """A new root. ``path_length=1`` allows one intermediate (a Linkerd issuer)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _window(now, lifetime, not_before, not_after)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, trust_domain)

    @property
    def cert_pem(self) -> bytes:
        return pem_cert(self.cert)

    def identity(self, namespace: str, service_account: str) -> WorkloadIdentity:
        return WorkloadIdentity(namespace, service_account, self.trust_domain)

    def issue(self, identity: WorkloadIdentity, *, dns_names: Sequence[str] = (),
              lifetime: dt.timedelta = DEFAULT_LEAF_LIFETIME,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              now: dt.datetime | None = None) -> IssuedCert:
        """Issue a leaf for ``identity``; ``dns_names`` are extra DNS SANs (Service names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _window(now, lifetime, not_before, not_after)
        names = list(dict.fromkeys([identity.identity_dns, *dns_names]))
        san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.spiffe_id)]
        san += [x509.DNSName(n) for n in names]
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(identity.identity_dns))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCert(identity=identity, cert_pem=pem_cert(cert), key_pem=pem_key(key),
                          ca_pem=self.cert_pem, not_before=start, not_after=end,
                          dns_names=tuple(names))
