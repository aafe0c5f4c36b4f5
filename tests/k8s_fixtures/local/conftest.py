"""Fixtures for the local backend tests: a shared cluster, state directories, leak checks.

Every cluster made here is named ``ztlc-...`` so tests never touch other users' namespaces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from ztlc_support import leaks

from k8s_fixtures.local.backend import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster per test module (the session-scope reuse the harness does)."""
    if os.geteuid() != 0:
        pytest.skip("not root")
    root = tmp_path_factory.mktemp("ztlc-state")
    root.chmod(0o755)
    with LocalCluster(prefix="ztlc", state_root=root) as c:
        yield c
    assert leaks(c.name, root) == []
