"""Synthetic but realistic results directories for the report tests.

Each cell's server event log is written with fl_app's own EventLog (on a simulated clock), read
back with fl_app.events.parse_events, turned into a ``ztfl.run/1`` row by pytest_ztfl.rows.build
and stored with ResultStore, exactly as a matrix run would store it.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.events import EventLog, parse_events
from pytest_ztfl import rows
from pytest_ztfl.matrix import Cell, Matrix, Workload
from pytest_ztfl.results import ResultStore

NET_BASE = {"NET0": 0.8, "NET2": 1.5, "NET4": 2.5}
SEC_FACTOR = {"SEC0": 1.0, "SEC1": 1.03, "SEC2": 1.12, "SEC3": 1.16}


class SimClockLog(EventLog):
    """An EventLog whose ``t`` is a simulated server clock the generator advances."""

    def __init__(self, run_id: str, stream: io.StringIO) -> None:
        super().__init__(run_id, stream=stream)
        self.clock = 0.0

    def now(self) -> float:
        return self.clock


def simulate(cell: Cell, *, fail_rounds: frozenset[int] = frozenset(),
             timeouts: int = 0) -> str:
    """The event log of one cell's FL run, as JSON lines."""
    wl = cell.workload
    rng = np.random.default_rng([cell.seed, list(SEC_FACTOR).index(cell.sec),
                                list(NET_BASE).index(cell.net), cell.data == "iid"])
    buf = io.StringIO()
    log = SimClockLog(cell.id, buf)
    clients = list(range(wl.clients))
    log.emit("run_start", config={"rounds": wl.rounds, "target_accuracy": wl.target_accuracy,
                                  "num_clients": wl.clients},
             partition={}, model_params=21840, update_bytes=87360, data_source="synthetic")
    log.emit("server_ready", port=50051)
    for c in clients:
        log.clock += 0.05
        log.emit("client_joined", client=c, peer=f"10.0.0.{c + 2}:4000",
                 identity=f"spiffe://ztfl/client-{c}")
    first: float | None = None
    reached = False
    speed = 4.0 if cell.data == "iid" else 9.0
    base = NET_BASE[cell.net] * SEC_FACTOR[cell.sec]
    accuracy = 0.0
    for r in range(1, wl.rounds + 1):
        first = log.clock if first is None else first
        log.emit("round_start", round=r, selected=clients)
        duration = float(base * rng.lognormal(0.0, 0.12))
        failing = clients[:wl.clients - 1] if r in fail_rounds else []
        timed_out = clients[-timeouts:] if timeouts and r == 2 else []
        ok_clients = [c for c in clients if c not in failing and c not in timed_out]
        for c in ok_clients:
            log.emit("client_update", round=r, client=c, bytes_down=87400, bytes_up=87400,
                     train_seconds=round(duration * 0.6, 6), num_samples=1200,
                     identity=f"spiffe://ztfl/client-{c}")
        failed = [{"client": c, "class": "mtls", "reason": "handshake"} for c in failing]
        failed += [{"client": c, "class": "timeout", "reason": "deadline"} for c in timed_out]
        for f in failed:
            log.emit("failure", round=r, client=f["client"], reason=f["reason"], detail="synthetic",
                     **{"class": f["class"]})
        log.clock += duration
        ok = len(ok_clients) >= math.ceil(0.6 * wl.clients)
        log.emit("round_end", round=r, ok=ok, participants=ok_clients, failed=failed,
                 duration=round(duration, 6), aggregation_seconds=0.004)
        if r % wl.eval_every == 0 or r == wl.rounds:
            accuracy = 0.975 * (1 - math.exp(-r / speed)) + float(rng.normal(0, 0.004))
            log.clock += 0.3
            log.emit("eval", round=r, accuracy=round(accuracy, 6), loss=1 - accuracy,
                     seconds=0.3)
            if not reached and accuracy >= wl.target_accuracy:
                reached = True
                log.emit("target_reached", round=r, accuracy=round(accuracy, 6),
                         target=wl.target_accuracy, tta_seconds=round(log.clock - first, 6))
    log.emit("run_end", ok=True, rounds_completed=wl.rounds, reason="completed",
             final_accuracy=round(accuracy, 6))
    return buf.getvalue()


def matrix(**kw: Any) -> Matrix:
    defaults: dict[str, Any] = {
        "name": "report-test", "sec": ("SEC0", "SEC3"), "net": ("NET0", "NET2"),
        "data": ("iid", "dirichlet-0.5"), "seeds": (0, 1),
        "workload": Workload(clients=4, rounds=12, eval_every=3, target_accuracy=0.9),
    }
    return Matrix(**{**defaults, **kw})


# A delay line's account of one cell (overlays.net.emulation, as pytest_ztfl.runner records it):
# whole-cell counters (classes) and the rounds alone (rounds): the report shows the rounds'
# held-weighted mean lateness (50 * 900 + 70 * 1100) / 2000 = 61 us and the cell's max, 900 us.
EMULATION = {
    "classes": {
        "0": {"label": "c0/up", "seen": 1500, "passed": 150, "held_total": 1350, "held_now": 0,
              "dropped_loss": 3, "late_mean_us": 500.0, "late_max_us": 400.0},
        "1": {"label": "c0/down", "seen": 1800, "passed": 150, "held_total": 1650,
              "held_now": 0, "dropped_loss": 2, "late_mean_us": 700.0, "late_max_us": 900.0},
    },
    "rounds": {  # the rounds alone (k8s_fixtures.netem.account.between)
        "0": {"label": "c0/up", "seen": 1000, "passed": 100, "held_total": 900,
              "dropped_loss": 3, "late_mean_us": 50.0},
        "1": {"label": "c0/down", "seen": 1200, "passed": 100, "held_total": 1100,
              "dropped_loss": 2, "late_mean_us": 70.0},
    },
    "kernel_queue_drops": 0,
    "delayline_cpu_s_rounds": 1.2,
    "delayline_cpu_s_per_round": 0.1,
}


def build_results(out: Path, m: Matrix | None = None, *,
                  faults: dict[str, dict[str, Any]] | None = None,
                  slo: dict[str, list[dict[str, Any]]] | None = None) -> list[Cell]:
    """Store every cell of ``m`` in ``out``; ``faults[cell_id]`` passes to :func:`simulate`."""
    m = m or matrix()
    store = ResultStore(out)
    store.prepare(m.to_dict(), resume=False)
    cells = m.cells()
    for i, cell in enumerate(cells):
        text = simulate(cell, **(faults or {}).get(cell.id, {}))
        log = parse_events(text.splitlines(), cell.id)
        row = rows.build(
            cell, log, started_wall=1_790_000_000.0 + 60 * i,
            proofs=[{"name": "rogue-pod-blocked", "control": "netpol", "passed": True,
                     "detail": ""},
                    {"name": "certless-client-refused", "control": "mtls", "passed": True,
                     "detail": ""}] if cell.sec != "SEC0" else [],
            overlays={"net": {"mechanism": "delayline", "emulation": EMULATION}
                      if cell.net != "NET0" else {"mechanism": "none"},
                      "netpol": {"action": "nftables"} if cell.netpol else {},
                      "mtls": {"mode": cell.mtls} if cell.tls else {}},
            pods=[], backend={"name": "local", "note": "network namespaces"},
        )
        row["finished_wall"] = 1_790_000_000.0 + 60 * i + 50
        if slo and cell.id in slo:
            row["slo"] = slo[cell.id]
        store.save(row, text.encode())
    return cells
