"""Fault scenarios: an optional matrix axis (``faults: [...]``, ``--ztfl-faults``) that injects
a real fault into a cell on purpose, so the failure taxonomy is tested against real failures.

A scenario may change the run before it is rendered (``prepare``: e.g. a CPU limit, a shorter
join timeout, an extra client id for a hostile peer), change the rendered Kubernetes objects
(``objects``: an expired certificate, a NetworkPolicy set without DNS, a restartPolicy; the
runner calls it through :func:`render`), and/or act while the rounds run (``inject``, called in
a thread once the rounds are released). Every action an injector takes is recorded in the run's
:class:`~pytest_ztfl.faults.base.ActionLog` (carried by its context) with its wall-clock window.

Classification is not here: the taxonomy (:mod:`pytest_ztfl.taxonomy`) labels every failure
from the harness's evidence, blind to which scenario ran. A scenario only says which class its
failures must get (``expect``); :func:`agreement` compares the two for the row, and a matrix
run fails a fault cell whose failures the taxonomy labels otherwise.

One module per family (``app``: the workload's own, resource, mtls, netpol, network), each a
tuple ``FAULTS`` built from :mod:`.base`; families never import each other (an import-linter
contract).
Scenarios that reach into the local backend (nft rules in a pod's network namespace, the delay
line's process) say so with ``local_only``; ``requires`` names what the cell must have
(``tls``: SEC2/SEC3 with native mTLS, ``netpol``: SEC1/SEC3, ``net``: a NET profile).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from k8s_fixtures import workload
from pytest_ztfl import taxonomy
from pytest_ztfl.faults import app, mtls, netpol, network, resource
from pytest_ztfl.faults.base import (
    FAULT_LABEL,
    JOIN_TIMEOUT,
    TARGET,
    Action,
    ActionLog,
    Fault,
    FaultContext,
    Obj,
)
from pytest_ztfl.faults.mtls import ROGUE_SA
from pytest_ztfl.faults.resource import CPU_LIMIT, OOM_LIMIT

if TYPE_CHECKING:
    from k8s_fixtures.tls.ca import CertificateAuthority
    from pytest_ztfl.taxonomy import Label

__all__ = [
    "CPU_LIMIT",
    "FAULTS",
    "FAULT_LABEL",
    "JOIN_TIMEOUT",
    "OOM_LIMIT",
    "ROGUE_SA",
    "TARGET",
    "Action",
    "ActionLog",
    "Fault",
    "FaultContext",
    "agreement",
    "get",
    "ready_names",
    "render",
]

FAULTS: dict[str, Fault] = {
    f.name: f
    for family in (app, resource, mtls, netpol, network)
    for f in family.FAULTS
}


def get(name: str | None) -> Fault | None:
    if name is None:
        return None
    if name not in FAULTS:
        raise ValueError(f"fault {name!r}: unknown (known: {', '.join(sorted(FAULTS))})")
    return FAULTS[name]


def render(fault: Fault | None, run: workload.FLRun, ca: CertificateAuthority | None) -> list[Obj]:
    """The run's objects with the fault's rewrite applied: what the runner must apply."""
    objs = workload.render(run, ca)
    if fault is None or fault.objects is None:
        return objs
    return fault.objects(objs, run, ca)


def ready_names(fault: Fault | None, objs: Sequence[Obj]) -> list[str] | None:
    """The pods the runner must wait for: all (None) unless the fault makes one of them fail
    or never become ready on purpose (an OOMKilled or refused client)."""
    if fault is None or not fault.unready:
        return None
    return [
        o["metadata"]["name"]
        for o in objs
        if o.get("kind") == "Pod" and o["metadata"]["name"] not in fault.unready
    ]


def agreement(fault: Fault, labels: Sequence[Label]) -> dict[str, Any]:
    """The blind taxonomy's labels of a fault cell's failures against the class the scenario
    must produce: ``agrees`` True when there are failures and all are of ``expect``, False when
    any is not, None when the fault caused no failure (nothing to judge: e.g. loss bursts that
    TCP rode out)."""
    classes = taxonomy.counts(list(labels))
    agrees = None if not labels else set(classes) == {fault.expect}
    return {"expect": fault.expect, "classified": classes, "agrees": agrees}
