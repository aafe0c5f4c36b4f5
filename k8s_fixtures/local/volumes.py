"""ConfigMap and Secret volumes (and emptyDir) for local pods: files written, then bind-mounted.

Each volume becomes a directory under the pod's state directory holding one file per key (or
per ``items`` entry) with ``defaultMode``; the launcher bind-mounts it at each container's
``mountPath`` in the pod's private mount namespace. Subset: contents are fixed when the pod
starts (a later change to the ConfigMap/Secret is not propagated), no ``subPath``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from k8s_fixtures.manifests import PodSpec, Volume

Lookup = Callable[[str, str], dict[str, bytes] | None]
"""(kind, name) -> the object's files, or None if it does not exist (in the pod's namespace)."""


def _files(v: Volume, data: dict[str, bytes]) -> dict[str, bytes]:
    if v.items:
        return {p: data[k] for k, p in v.items}
    return dict(data)


def materialize(pod_dir: Path, spec: PodSpec, lookup: Lookup) -> dict[str, Path]:
    """Write every volume of the pod; return volume name -> directory."""
    out: dict[str, Path] = {}
    for v in spec.volumes:
        d = pod_dir / "volumes" / v.name
        d.mkdir(parents=True)
        out[v.name] = d
        if v.kind == "emptyDir":
            d.chmod(0o777)
            continue
        data = lookup("Secret" if v.kind == "secret" else "ConfigMap", v.source) or {}
        for rel, content in _files(v, data).items():
            f = d / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, v.default_mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.chmod(f, v.default_mode)  # umask must not narrow defaultMode
    return out


def touch(mounts: list[dict[str, object]], path: str) -> bool:
    """Create ``path`` (as a container with these mounts sees it) in the host directory of
    the writable volume holding it; False when none does."""
    for m in sorted(mounts, key=lambda m: -len(str(m["dst"]))):
        dst = str(m["dst"]).rstrip("/")
        if path.startswith(dst + "/") and not m.get("ro"):
            (Path(str(m["src"])) / path[len(dst) + 1:]).touch()
            return True
    return False
