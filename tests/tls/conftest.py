"""Fixtures for the mTLS tests: one PKI per session, a process list per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tls_helpers import PKI, Procs, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    ps.stop_all()
