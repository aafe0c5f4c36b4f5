"""``ztfl probe --sec SEC3``: stand up a small FL run on a fresh local cluster, run the proofs
of enforcement of that security level, print them, tear everything down."""

from __future__ import annotations

import json
import os
import sys

from k8s_fixtures import proofs as pf
from k8s_fixtures.cluster import ClusterError
from k8s_fixtures.netem.profiles import NULL_PROFILE
from pytest_ztfl import backends, cellplan, runner
from pytest_ztfl.matrix import Cell, Workload
from pytest_ztfl.sec import Sec


def probe_cell(sec: str, mtls: str) -> Cell:
    tls = Sec(sec).mtls
    return Cell(
        sec=sec,
        net=NULL_PROFILE,
        data="iid",
        seed=0,
        workload=Workload(clients=2, rounds=1, min_participants=1),
        mtls=mtls if tls else None,
    )


def prove(backend: backends.Backend, cell: Cell) -> list[pf.Proof]:
    """Deploy the cell's objects (held before round 1) as a measured cell does, run the proofs
    of what the cell claims (its SEC level and mTLS mode, not what was rendered), delete the
    namespace."""
    cp = cellplan.plan_cell(cell, backend.platform)
    try:
        return runner.deploy_and_prove(backend.cluster, cp)
    finally:
        backend.cluster.delete(namespace=cp.run.namespace)


def main_probe(sec: str, mtls: str, data_dir: str | None, as_json: bool) -> int:
    data = data_dir or os.environ.get("ZTFL_DATA_DIR") or os.path.expanduser("~/.cache/ztfl/mnist")
    cell = probe_cell(sec, mtls)
    try:
        backend = backends.create("local", data_dir=data)
    except backends.BackendError as exc:
        sys.stderr.write(f"ztfl probe: error: {exc}\n")
        return 2
    try:
        results = prove(backend, cell)
    except ClusterError as exc:
        sys.stderr.write(f"ztfl probe: error: {exc}\n")
        return 2
    finally:
        backend.cluster.teardown()
    if as_json:
        print(json.dumps([p.to_dict() for p in results], indent=1))
    else:
        print(f"proofs for {sec}" + (f" (mTLS {mtls})" if cell.tls else ""))
        for p in results:
            print(
                f"  {'PASS' if p.passed else 'FAIL'}  {p.name:<18} expect {p.expect:<9} {p.detail}"
            )
    return 0 if all(p.passed for p in results) else 1
