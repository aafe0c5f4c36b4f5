"""Fixtures of the NetworkPolicy tests: one real e2e model per session, cleaned up always."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from k8s_fixtures.netpol.e2emodel import ModelSpec
from k8s_fixtures.netpol.nft import DEFAULT_DENY_ACTION
from k8s_fixtures.netpol.probe import NetnsModel

# The upstream model's ports plus 53 for the DNS-egress case.
SPEC = ModelSpec(ports=(80, 81, 53))


@pytest.fixture(scope="session")
def netns_model() -> Iterator[NetnsModel]:
    """The 9-pod model on network namespaces (prefix ``ztnp<random>``), agents running."""
    with NetnsModel(SPEC) as model:
        yield model


@pytest.fixture
def model(netns_model: NetnsModel) -> Iterator[NetnsModel]:
    """The shared model, reset to no policies and the default deny action after each test."""
    try:
        yield netns_model
    finally:
        netns_model.set_deny_action(DEFAULT_DENY_ACTION)
        netns_model.apply([])
