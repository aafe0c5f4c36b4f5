"""One cell's set-up, built in one place: its FL run (as its fault prepares it), CA material,
proof plan (what the cell claims) and objects (as its fault rewrites them, plus the probe pods).

The runner applies and proves exactly this, ``ztfl probe`` proves it and ``ztfl render``
writes it, so what is rendered, what is measured and what is proved cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8s_fixtures import proofs as pf
from k8s_fixtures import workload
from k8s_fixtures.tls.ca import CertificateAuthority
from pytest_ztfl import faults
from pytest_ztfl.backends import Platform
from pytest_ztfl.matrix import MTLS_MODES, Cell, MatrixError

HOLD_FILE = "/var/run/ztfl/hold/go"
READY_TIMEOUT = 300.0
OTHER_CA = "ztfl other CA"  # issues the leaf the other-CA probe presents (must be refused)
Obj = dict[str, Any]


def namespace_for(cell: Cell) -> str:
    """The cell's namespace: its id as a DNS-1123 label (``dir0.1`` has a dot)."""
    return "ztfl-" + cell.id.lower().replace(".", "-")


def fl_run(cell: Cell, platform: Platform, hold_rounds: bool = False) -> workload.FLRun:
    """The cell's FL run as rendered without a fault (the fault's ``prepare`` comes after).
    ``hold_rounds``: the server also holds every round for the schedule's release (a block
    whose rounds are interleaved, pytest_ztfl.design)."""
    wl = cell.workload
    flags = {
        "--clients": wl.clients,
        "--rounds": wl.rounds,
        "--min-participants": wl.min_participants,
        "--round-deadline": wl.round_deadline,
        "--local-epochs": wl.local_epochs,
        "--max-steps": wl.max_steps,
        "--batch-size": wl.batch_size,
        "--lr": wl.lr,
        "--eval-every": wl.eval_every,
        "--target-accuracy": wl.target_accuracy,
        "--model": wl.model,
        "--split": cell.data,
        "--seed": cell.seed,
        "--data-dir": platform.data_dir,
        "--join-timeout": READY_TIMEOUT,
        "--hold-file": HOLD_FILE,
    }
    if cell.inject_delay_ms:
        flags["--inject-delay-ms"] = cell.inject_delay_ms
    draws = cell.clients()  # heterogeneity: each client's class, NET, CPU, absent rounds
    absent = ",".join(f"{r}:{d.client}" for d in draws for r in d.absent)
    if absent:
        flags["--absent"] = absent
    server_flags = tuple(x for k, v in flags.items() for x in (k, str(v)))
    if hold_rounds:
        server_flags += ("--hold-rounds",)
    tls = cell.mtls if cell.tls and cell.mtls else "none"
    res = wl.resources  # the matrix's workload.resources (none: BestEffort pods)
    return workload.FLRun(
        namespace=namespace_for(cell),
        run_id=cell.id,
        clients=wl.clients,
        server_flags=server_flags,
        client_flags=(
            "--data-dir",
            platform.data_dir,
            "--threads",
            "1",
            "--connect-timeout",
            str(READY_TIMEOUT),
        ),
        python=platform.python,
        image=platform.image,
        netem_init=platform.netem_init,
        node_agent_wait=platform.node_agent_wait,
        restricted=cell.restricted,
        tls=tls,  # type: ignore[arg-type]
        netpol=cell.netpol,
        net_profile=cell.net if cell.shaped else None,
        hold_dir=str(Path(HOLD_FILE).parent),
        server_resources=res.server.limits.to_dict(),
        server_requests=res.server.requests.to_dict(),
        client_resources=res.client.limits.to_dict(),
        client_requests=res.client.requests.to_dict(),
        overrides={
            d.client: workload.ClientOverride(
                net_profile=d.net if d.net not in (None, cell.net) else None,
                cpu_limit=d.cpu,
            )
            for d in draws
            if (d.net not in (None, cell.net)) or d.cpu
        },
    )


def claimed_tls(cell: Cell) -> str:
    """The mTLS mode the cell claims (what its proofs expect), whatever was rendered."""
    return (cell.mtls or "sidecar") if cell.tls else "none"


@dataclass(frozen=True)
class CellPlan:
    """What one cell applies and proves."""

    cell: Cell
    run: workload.FLRun  # after the fault's prepare
    fault: faults.Fault | None
    ca: CertificateAuthority | None  # the harness CA (SEC2/SEC3)
    other_ca: CertificateAuthority | None  # the negative proofs' CA (SEC2/SEC3)
    proofs: pf.ProofPlan  # from the cell's claims (SEC level, mTLS mode), not from ``run``
    probes: tuple[Obj, ...]  # the probe pods and their Secret

    def workload_objects(self) -> list[Obj]:
        """The FL run's objects with the fault's rewrite (certificates issued per call)."""
        return faults.render(self.fault, self.run, self.ca)

    def objects(self) -> list[Obj]:
        """Everything the cell applies before its proofs: FL objects, then the probes."""
        return [*self.workload_objects(), *self.probes]


def plan_cell(cell: Cell, platform: Platform, hold_rounds: bool = False) -> CellPlan:
    """Build ``cell``'s run, CAs, proof plan and probe pods for ``platform``. Raises
    :class:`MatrixError` for a cell whose SEC level asks for mTLS without naming a mode (a
    matrix always names one; a cell built in Python may not)."""
    if cell.tls and cell.mtls not in MTLS_MODES:
        raise MatrixError(f"cell {cell.id}: mtls={cell.mtls!r}: {cell.sec} needs an mTLS mode, "
                          f"one of {', '.join(MTLS_MODES)}")
    run = fl_run(cell, platform, hold_rounds)
    fault = faults.get(cell.fault)
    if fault is not None:
        run = fault.prepare(run)
    ca = CertificateAuthority.create() if cell.tls else None
    other = CertificateAuthority.create(name=OTHER_CA) if cell.tls else None
    proofs = pf.ProofPlan(
        namespace=run.namespace,
        python=run.python,
        image=run.image,
        netpol=cell.netpol,
        tls=claimed_tls(cell),
        restricted=cell.restricted,
    )
    return CellPlan(cell, run, fault, ca, other, proofs, tuple(pf.probe_pods(proofs, ca, other)))
