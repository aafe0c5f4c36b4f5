"""``ztfl render``: every cell's Kubernetes objects as YAML, one folder per cell.

What a run would apply, for inspection, diffing or GitOps: built by
:func:`pytest_ztfl.cellplan.plan_cell` as the runner builds it, so a fault cell's objects are
written as its fault rewrites them (an expired client certificate, a policy without DNS, ...).
Rendered for a Kubernetes cluster (image, in-image data path, the tc init container for NET
profiles; in SEC3's restricted pods the wait for the node agent, deploy/node-agent.yaml), so
certificates are freshly issued by a throwaway CA at render time: they are examples, not
secrets to keep.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from k8s_fixtures import workload
from pytest_ztfl.backends import IMAGE_DATA_DIR, NETEM_INIT, NODE_AGENT_WAIT, Platform
from pytest_ztfl.cellplan import plan_cell
from pytest_ztfl.matrix import Cell, Matrix


def cell_objects(cell: Cell, image: str, interleave: str = "round") -> list[dict[str, object]]:
    """What a run of ``cell`` applies on a Kubernetes cluster, as its fault rewrites it; with
    rounds interleaved (the default design, pytest_ztfl.design) its server holds every round
    for the schedule's release (``--hold-rounds``)."""
    platform = Platform(
        python=("python",), data_dir=IMAGE_DATA_DIR, image=image, netem_init=NETEM_INIT,
        node_agent_wait=NODE_AGENT_WAIT,
    )
    hold = interleave == "round" and cell.fault is None
    return plan_cell(cell, platform, hold_rounds=hold).objects()


class _PlainDumper(yaml.SafeDumper):
    """Every object written out in full: a list shared by two containers (their volume mounts)
    would otherwise become a YAML anchor and alias (``&id001``), valid but hard to read and
    diff."""

    def ignore_aliases(self, data: object) -> bool:
        return True


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
            (folder / name).write_text(yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False))
        folders.append(folder)
    return folders
