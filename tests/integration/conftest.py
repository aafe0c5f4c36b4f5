"""Fixtures for the integration tests: one real local cluster (``ztfl-<hex>``, made by
``backends.create("local")`` exactly as a matrix run makes it) shared by every test of the
session and torn down at the end, even when tests fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_support import Live

from pytest_ztfl import backends


@pytest.fixture(scope="session")
def live(data_dir: Path) -> Iterator[Live]:
    try:
        backend = backends.create("local", data_dir=str(data_dir))
    except backends.BackendError as exc:
        pytest.fail(f"local backend: {exc}", pytrace=False)
    try:
        yield Live(backend)
    finally:
        backend.cluster.teardown()
