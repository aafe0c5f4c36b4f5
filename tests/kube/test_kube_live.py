"""Round trips against a real cluster: they run only where one is reachable.

``kube``: set ``ZTFL_KUBE_CONTEXT`` (or have a current context); ``kind``: a Docker daemon and
kind >= v0.24 (the image ``$ZTFL_IMAGE``, default ghcr.io/ztfl/fl-app:0.1.0, must be built).
Elsewhere each test skips with the precise reason (what ``available()`` says).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from k8s_fixtures.cluster import Cluster
from k8s_fixtures.kube import available, create_kube, kind
from k8s_fixtures.workload import DEFAULT_IMAGE

IMAGE = os.environ.get("ZTFL_IMAGE", DEFAULT_IMAGE)


def _round_trip(cluster: Cluster) -> None:
    ns = f"ztfl-live-{secrets.token_hex(3)}"
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "echo", "namespace": ns, "labels": {"app": "echo"}},
           "spec": {"restartPolicy": "Never", "containers": [
               {"name": "echo", "image": IMAGE,
                "command": ["python", "-c", "print('hello', flush=True)\n"
                            "import time\nwhile True: time.sleep(3600)"]}]}}
    try:
        cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, pod])
        [st] = cluster.wait_ready(ns, timeout=180)
        assert st.name == "echo" and st.ip
        assert cluster.exec(ns, "echo", ["python", "-c", "import sys; sys.exit(3)"]).rc == 3
        rc, out, _ = cluster.exec(ns, "echo", ["python", "-c", "import sys; "
                                               "print(sys.stdin.read(4).upper())"], input="ping")
        assert (rc, out) == (0, "PING\n")
        assert list(cluster.logs(ns, "echo")) == ["hello"]
        assert [p.name for p in cluster.pods(ns, selector={"app": "echo"})] == ["echo"]
    finally:
        cluster.delete(namespace=ns)


@pytest.fixture
def kube_cluster() -> Iterator[Cluster]:
    context = os.environ.get("ZTFL_KUBE_CONTEXT")
    ok, why = available(context)
    if not ok:
        pytest.skip(f"kube backend: {why}")
    cluster = create_kube(context)
    yield cluster
    cluster.teardown()


@pytest.fixture
def kind_cluster() -> Iterator[Cluster]:
    ok, why = kind.available()
    if not ok:
        pytest.skip(f"kind backend: {why}")
    cluster = kind.create_kind("ztfl-test", IMAGE)
    yield cluster
    cluster.teardown()


def test_kube_round_trip(kube_cluster: Cluster) -> None:
    _round_trip(kube_cluster)


def test_kind_round_trip(kind_cluster: Cluster) -> None:
    _round_trip(kind_cluster)
