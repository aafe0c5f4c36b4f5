"""Shared mTLS test helpers: the PKI every test uses, and a process list stopped by PID."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from k8s_fixtures.tls.ca import CertificateAuthority, service_dns_names
from k8s_fixtures.tls.secret import TLSFiles, write_files, write_material

NS = "ztfl-run"
SERVER_SA, CLIENT_SA, ROGUE_SA = "fl-server", "fl-client", "rogue"


@dataclass(frozen=True)
class PKI:
    ca: CertificateAuthority
    server: TLSFiles
    client: TLSFiles
    rogue: TLSFiles  # valid chain, identity not on the allow-list
    other_ca: TLSFiles  # cert+key from another CA, but trusting the real CA
    other_ca_only: TLSFiles  # cert+key from another CA, trusting only that CA
    expired: TLSFiles
    not_yet_valid: TLSFiles

    @property
    def client_id(self) -> str:
        return self.ca.identity(NS, CLIENT_SA).spiffe_id


def make_pki(root: Path) -> PKI:
    ca, other = CertificateAuthority.create(), CertificateAuthority.create("other CA")
    now = dt.datetime.now(dt.UTC)

    def files(name: str, issued_by: CertificateAuthority, sa: str,
              not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> TLSFiles:
        dns = service_dns_names(SERVER_SA, NS) if sa == SERVER_SA else []
        issued = issued_by.issue(issued_by.identity(NS, sa), dns_names=dns,
                                 not_before=not_before, not_after=not_after)
        return write_files(issued, root / name)

    foreign = other.issue(other.identity(NS, CLIENT_SA))
    other_dir = root / "other-ca"
    other_files = write_material(foreign.cert_pem, foreign.key_pem, ca.cert_pem, other_dir)
    return PKI(
        ca=ca,
        server=files("server", ca, SERVER_SA),
        client=files("client", ca, CLIENT_SA),
        rogue=files("rogue", ca, ROGUE_SA),
        other_ca=other_files,
        other_ca_only=files("other-ca-only", other, CLIENT_SA),
        expired=files("expired", ca, CLIENT_SA, not_before=now - dt.timedelta(days=2),
                      not_after=now - dt.timedelta(days=1)),
        not_yet_valid=files("future", ca, CLIENT_SA, not_before=now + dt.timedelta(days=1),
                            not_after=now + dt.timedelta(days=2)),
    )


class Procs:
    """Processes a test started; all are stopped by PID at teardown, even on failure."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def add(self, p: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


def read_until(path: Path, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
    """Poll a log file until ``predicate(text)`` holds; return the text (fail on deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"{path}: condition not met within {timeout}s; log tail: {text[-800:]}")
        time.sleep(0.02)
