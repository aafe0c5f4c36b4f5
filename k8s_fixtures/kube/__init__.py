"""Kubernetes backends: any cluster from a kubeconfig (``kube``) and local kind clusters (``kind``).

Both drive a real API server with the official ``kubernetes`` client (optional extra ``kube``)
and implement :class:`k8s_fixtures.cluster.Cluster` with the same objects the local backend
uses. Modules, one job each:

* :mod:`.status`    a pod document as the API returns it -> ``PodStatus``;
* :mod:`.failures`  why a pod is not progressing (OOMKilled, image not loaded, Init:Error ...),
                    each with the class the harness reports and the fix;
* :mod:`.readiness` ready / still waiting / failed, decided from pod documents;
* :mod:`.errors`    one-line messages: no reachable cluster, RBAC 403, CNI not enforcing;
* :mod:`.config`    kubeconfig discovery without contacting a server (``available``);
* :mod:`.client`    the only module that imports ``kubernetes``: a small typed wrapper;
* :mod:`.backend`   :class:`KubeCluster`, the thin layer over the wrapper;
* :mod:`.kind`      kind clusters (pytest-kind-ng, else the kind CLI): create, reuse, load.

Selection helpers (what ``--ztfl-backend`` calls): :func:`available`, :func:`create_kube`,
:func:`k8s_fixtures.kube.kind.available`, :func:`k8s_fixtures.kube.kind.create_kind`.
"""

from __future__ import annotations

from k8s_fixtures.kube.config import available
from k8s_fixtures.kube.factory import create_kube

__all__ = ["available", "create_kube"]
