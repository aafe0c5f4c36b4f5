"""``ztfl render``: every cell's Kubernetes objects as YAML, one folder per cell.

What a run would apply, for inspection, diffing or GitOps. Rendered for a Kubernetes cluster
(image, in-image data path, the tc init container for NET profiles), so certificates are
freshly issued by a throwaway CA at render time: they are examples, not secrets to keep.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from k8s_fixtures import workload
from k8s_fixtures.proofs import ProofPlan, probe_pods
from k8s_fixtures.tls.ca import CertificateAuthority
from pytest_ztfl.backends import IMAGE_DATA_DIR, NETEM_INIT, Platform
from pytest_ztfl.matrix import Cell, Matrix
from pytest_ztfl.runner import fl_run


def cell_objects(cell: Cell, image: str) -> list[dict[str, object]]:
    run = fl_run(
        cell,
        Platform(python=("python",), data_dir=IMAGE_DATA_DIR, image=image, netem_init=NETEM_INIT),
    )
    ca = CertificateAuthority.create() if cell.tls else None
    other = CertificateAuthority.create(name="ztfl other CA") if cell.tls else None
    plan = ProofPlan(
        namespace=run.namespace, python=("python",), image=image, netpol=cell.netpol, tls=run.tls
    )
    return [*workload.render(run, ca), *probe_pods(plan, ca, other)]


def render_matrix(matrix: Matrix, out: Path, image: str = workload.DEFAULT_IMAGE) -> list[Path]:
    """Write ``<out>/<cell-id>/<nn>-<kind>-<name>.yaml`` for every cell; returns the folders."""
    folders = []
    for cell in matrix.cells():
        folder = out / cell.id
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.yaml"):
            old.unlink()
        for i, obj in enumerate(cell_objects(cell, image)):
            meta = obj.get("metadata", {})
            assert isinstance(meta, dict)
            name = f"{i:02d}-{str(obj['kind']).lower()}-{meta.get('name')}.yaml"
            (folder / name).write_text(yaml.safe_dump(obj, sort_keys=False))
        folders.append(folder)
    return folders
