"""Kubeconfig discovery without contacting any server: which context, which API server.

Files are found as kubectl finds them (``$KUBECONFIG``, a path list, else ``~/.kube/config``)
and merged the same way (the first file to define a name wins, the first ``current-context``
wins). In a pod, the in-cluster service account counts as a configuration. :func:`available`
answers ``--ztfl-backend=auto`` quickly; reachability is checked by ``create_kube``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class KubeConfigInfo:
    files: tuple[Path, ...]
    current: str | None = None
    servers: Mapping[str, str] = field(default_factory=dict)  # context -> API server URL

    @property
    def contexts(self) -> list[str]:
        return list(self.servers)


def kubeconfig_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    """The kubeconfig files kubectl would read (existing ones only)."""
    env = os.environ if env is None else env
    raw = env.get("KUBECONFIG")
    paths = ([Path(p).expanduser() for p in raw.split(os.pathsep) if p] if raw
             else [Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"])
    return [p for p in paths if p.is_file()]


def _named(doc: Mapping[str, Any], key: str, inner: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for item in doc.get(key) or []:
        if isinstance(item, Mapping) and isinstance(item.get(inner), Mapping):
            out.setdefault(str(item.get("name")), item[inner])
    return out


def read_kubeconfig(paths: list[Path]) -> KubeConfigInfo:
    """Merge the files' contexts and clusters; unreadable files are skipped."""
    current: str | None = None
    contexts: dict[str, Mapping[str, Any]] = {}
    clusters: dict[str, Mapping[str, Any]] = {}
    for p in paths:
        try:
            doc = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, Mapping):
            continue
        current = current or (str(doc["current-context"]) if doc.get("current-context")
                              else None)
        for k, v in _named(doc, "contexts", "context").items():
            contexts.setdefault(k, v)
        for k, v in _named(doc, "clusters", "cluster").items():
            clusters.setdefault(k, v)
    servers = {name: str((clusters.get(str(ctx.get("cluster"))) or {}).get("server") or "?")
               for name, ctx in contexts.items()}
    return KubeConfigInfo(tuple(paths), current, servers)


def in_cluster(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and IN_CLUSTER_TOKEN.is_file()


def client_installed() -> bool:
    return importlib.util.find_spec("kubernetes") is not None


def available(context: str | None = None,
              env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(usable, one-line reason): is there a kubeconfig context (or in-cluster config) and the
    ``kubernetes`` client? Does not contact the server."""
    if not client_installed():
        return False, ("the kubernetes Python client is not installed "
                       "(pip install 'pytest-ztfl[kube]')")
    paths = kubeconfig_paths(env)
    if not paths:
        if context is None and in_cluster(env):
            return True, "in-cluster service account"
        where = (env or os.environ).get("KUBECONFIG") or "~/.kube/config"
        return False, f"no kubeconfig context: {where} not found (set KUBECONFIG)"
    info = read_kubeconfig(paths)
    name = context or info.current
    files = os.pathsep.join(str(p) for p in paths)
    if not name:
        return False, (f"no kubeconfig context: {files} sets no current-context "
                       f"(contexts: {', '.join(info.contexts) or 'none'}); pass one")
    if name not in info.servers:
        return False, (f"no kubeconfig context {name!r} in {files} "
                       f"(contexts: {', '.join(info.contexts) or 'none'})")
    return True, f"context {name} (server {info.servers[name]}) from {files}"
