"""Choose and create the cluster a matrix runs on (``--ztfl-backend``), with its overlays.

``auto`` picks ``local`` on this kind of machine; ``kind`` and ``kube`` need Docker/kind or a
kubeconfig context and say so when they are not available. The choice and the reason are
returned as a note that is printed and stored with every result row.
"""

from __future__ import annotations

import shutil
from typing import Any


class BackendError(RuntimeError):
    """The requested backend cannot be created here; the message says why and what to do."""


def _local() -> tuple[Any, str]:
    from k8s_fixtures.cluster import ClusterError
    from k8s_fixtures.local.backend import LocalCluster
    from k8s_fixtures.netem.local_overlay import NetemOverlay
    from k8s_fixtures.netpol.overlay import NetpolOverlay

    cluster = LocalCluster(prefix="ztfl")
    try:
        cluster.start()
    except ClusterError as exc:
        raise BackendError(f"--ztfl-backend=local: {exc}") from None
    try:
        netpol = NetpolOverlay()
        cluster.add_overlay(netpol)
        netem = NetemOverlay()
        cluster.add_overlay(netem)
    except BaseException:
        cluster.teardown()
        raise
    cluster.backend_name = "local"  # type: ignore[attr-defined]
    cluster.netpol_metadata = netpol.metadata()  # type: ignore[attr-defined]
    cluster.netem = netem  # type: ignore[attr-defined]
    return cluster, f"local ({cluster.mode}, cluster {cluster.name}, pod CIDR {cluster.cidr})"


def create(name: str) -> tuple[Any, str]:
    if name in ("auto", "local"):
        cluster, note = _local()
        if name == "auto":
            why = (
                "docker and kind are not both installed"
                if not (shutil.which("docker") and shutil.which("kind"))
                else "no kube context asked"
            )
            note = f"auto -> {note}: {why}"
        return cluster, note
    raise BackendError(
        f"--ztfl-backend={name}: not available on this machine yet "
        "(see README 'Running on Kubernetes')"
    )
