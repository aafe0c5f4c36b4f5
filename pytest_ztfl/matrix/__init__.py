"""The experiment matrix: cells (SEC x NET x data x seed [x mTLS mode]) with stable ids, presets,
and matrix files in YAML.

A cell id reads ``SEC3-NET2-noniid-s0`` (``iid``; ``noniid`` is Dirichlet alpha 0.5, other
alphas read ``dir0.1``); when a matrix measures more than one mTLS mode, SEC2/SEC3 ids end
in ``-sidecar``, ``-native`` or ``-mesh``; with client heterogeneity (:mod:`.hetero`), in
``-h<name>``. Ids are stable: they name results, benchmark records and tests.

mTLS modes: ``sidecar`` (a TLS proxy per pod, the default), ``native`` (the app speaks TLS),
``mesh`` (Linkerd's proxies and policy objects: Kubernetes backends only, see
:func:`pytest_ztfl.backends.cell_unsupported`).
"""

from pytest_ztfl.matrix.errors import MatrixError
from pytest_ztfl.matrix.hetero import ClientDraw, DeviceClass, Heterogeneity
from pytest_ztfl.matrix.model import CHECK_RE, MTLS_MODES, Cell, Matrix, Workload
from pytest_ztfl.matrix.parse import PRESETS, from_dict, load, override, parse_seeds
from pytest_ztfl.matrix.resources import ContainerResources, Quantities, Resources

__all__ = [
    "CHECK_RE",
    "MTLS_MODES",
    "PRESETS",
    "Cell",
    "ClientDraw",
    "ContainerResources",
    "DeviceClass",
    "Heterogeneity",
    "Matrix",
    "MatrixError",
    "Quantities",
    "Resources",
    "Workload",
    "from_dict",
    "load",
    "override",
    "parse_seeds",
]
