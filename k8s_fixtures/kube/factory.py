"""``create_kube``: connect to a cluster from kubeconfig (or in-cluster) and check it answers.

The API server is contacted once (``GET /version``, a few seconds at most) before the cluster
object is returned, so a dead context fails here with the "no reachable cluster" message and
its fix rather than halfway through a run.
"""

from __future__ import annotations

from pathlib import Path

from k8s_fixtures.kube.backend import KubeCluster
from k8s_fixtures.kube.client import KubeApi
from k8s_fixtures.kube.config import in_cluster, kubeconfig_paths


def create_kube(context: str | None = None, *, kubeconfig: Path | None = None,
                connect_timeout: float = 5.0, kind_cluster: str | None = None) -> KubeCluster:
    """A :class:`KubeCluster` on ``context`` (default: the current context, else in-cluster).

    Raises :class:`~k8s_fixtures.cluster.ClusterError` (unreachable, bad kubeconfig) or
    :class:`~k8s_fixtures.cluster.PrivilegeError` (client not installed, 401/403).
    """
    use_in_cluster = (kubeconfig is None and context is None and not kubeconfig_paths()
                      and in_cluster())
    api = KubeApi(context, kubeconfig, in_cluster=use_in_cluster)
    name = f"kind-{kind_cluster}" if kind_cluster else None
    return KubeCluster(api, name=name, kind_cluster=kind_cluster).connect(connect_timeout)
