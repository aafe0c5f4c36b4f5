"""Fixtures for the local backend tests: a shared cluster, state directories, leak checks.

Every cluster made here is named ``ztlc-...`` so tests never touch other users' namespaces.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ztlc_support import module_cluster

from k8s_fixtures.local.backend import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster per test module (the session-scope reuse the harness does)."""
    with module_cluster(tmp_path_factory) as c:
        yield c
