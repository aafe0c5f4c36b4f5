"""Synthetic but realistic results directories for the report tests.

Each cell's server event log is written with fl_app's own EventLog (on a simulated clock), read
back with fl_app.events.parse_events, turned into a ``ztfl.run/1`` row by pytest_ztfl.rows.build
and stored with ResultStore, exactly as a matrix run would store it.

With ``design=True`` the cells are measured as pytest_ztfl.design's blocks would be in mode
``round``: each row records its block, block run and round orders; a block's arms share a
per-round disturbance (the machine's drift, which pairing cancels), every server is held
between its rounds (``round_hold``) while the others run, and the harness's per-round CPU
(``cpu_seconds``, proxies, delay line, the machine's other load) and the pods' peak memory are
recorded. The numbers are simple functions of the round so tests can name them:

* load met by a round (``cpu_other_seconds``): (0.2, 0.3, 0.4)[r % 3] x its duration;
* an arm's CPU per round: 0.9 x its duration, of which the proxies 0.1 x (SEC2/SEC3);
* delay line CPU per round: 0.02 s (NET other than NET0);
* peak memory: server 300 MiB, each client 200 MiB, each TLS proxy 20 MiB.

A ``delay<MS>ms`` check arm's rounds are its block's SEC0 arm's rounds plus exactly MS ms of
communication; an ``aa`` arm has its own noise (and ``factor`` in ``arms`` makes it differ).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.events import EventLog, ParsedLog, parse_events
from pytest_ztfl import rows
from pytest_ztfl.matrix import Cell, Matrix, Workload
from pytest_ztfl.results import ResultStore

NET_BASE = {"NET0": 0.8, "NET2": 1.5, "NET4": 2.5}
# Each SEC level's true cost: within the default median limit (1.10x), so a small stored matrix
# passes its gates (tests/plugin/test_plugin_report.py); tests of failing gates patch these.
SEC_FACTOR = {"SEC0": 1.0, "SEC1": 1.03, "SEC2": 1.06, "SEC3": 1.08}


class SimClockLog(EventLog):
    """An EventLog whose ``t`` is a simulated server clock the generator advances."""

    def __init__(self, run_id: str, stream: io.StringIO) -> None:
        super().__init__(run_id, stream=stream)
        self.clock = 0.0

    def now(self) -> float:
        return self.clock


def _rng(cell: Cell) -> np.random.Generator:
    key = [cell.seed, list(SEC_FACTOR).index(cell.sec), list(NET_BASE).index(cell.net),
           cell.data == "iid"]
    # an A/A arm has noise of its own; a delay arm is its block's SEC0 arm plus the delay
    return np.random.default_rng([*key, 1] if cell.check == "aa" else key)


def simulate(cell: Cell, *, fail_rounds: frozenset[int] = frozenset(),
             timeouts: int = 0, shared: list[float] | None = None, delay_s: float = 0.0,
             factor: float = 1.0, hold_s: float = 0.0, jitter: float = 0.12,
             data_source: str = "synthetic") -> str:
    """The event log of one cell's FL run, as JSON lines. ``shared``: a per-round factor the
    block's arms all meet; ``delay_s``: added to every round's communication (a delay arm);
    ``factor``: scales the arm's rounds; ``hold_s``: the server is held this long before
    every round (``round_hold``: other arms' rounds run meanwhile); ``jitter``: the sd of the
    arm's own round-to-round noise (log scale); ``data_source``: what run_start names."""
    wl = cell.workload
    rng = _rng(cell)
    buf = io.StringIO()
    log = SimClockLog(cell.id, buf)
    clients = list(range(wl.clients))
    log.emit("run_start", config={"rounds": wl.rounds, "target_accuracy": wl.target_accuracy,
                                  "num_clients": wl.clients},
             partition={}, model_params=21840, update_bytes=87360, data_source=data_source)
    log.emit("server_ready", port=50051)
    for c in clients:
        log.clock += 0.05
        log.emit("client_joined", client=c, peer=f"10.0.0.{c + 2}:4000",
                 identity=f"spiffe://ztfl/client-{c}")
    first: float | None = None
    held = 0.0
    reached = False
    speed = 4.0 if cell.data == "iid" else 9.0
    base = NET_BASE[cell.net] * SEC_FACTOR[cell.sec] * factor
    accuracy = 0.0
    for r in range(1, wl.rounds + 1):
        if hold_s:
            log.emit("round_hold", round=r)
            log.clock += hold_s
            held += hold_s if first is not None else 0.0
        first = log.clock if first is None else first
        log.emit("round_start", round=r, selected=clients)
        work = float(base * rng.lognormal(0.0, jitter)) * (shared[r - 1] if shared else 1.0)
        duration = work + delay_s
        failing = clients[:wl.clients - 1] if r in fail_rounds else []
        timed_out = clients[-timeouts:] if timeouts and r == 2 else []
        ok_clients = [c for c in clients if c not in failing and c not in timed_out]
        started = log.clock
        log.clock = started + duration - 0.004  # the updates are in; aggregation remains
        for c in ok_clients:
            log.emit("client_update", round=r, client=c, bytes_down=87400, bytes_up=87400,
                     train_seconds=round(work * 0.6, 6), num_samples=1200,
                     identity=f"spiffe://ztfl/client-{c}")
        failed = [{"client": c, "class": "mtls", "reason": "handshake"} for c in failing]
        failed += [{"client": c, "class": "timeout", "reason": "deadline"} for c in timed_out]
        for f in failed:
            log.emit("failure", round=r, client=f["client"], reason=f["reason"], detail="synthetic",
                     **{"class": f["class"]})
        log.clock = started + duration
        ok = len(ok_clients) >= math.ceil(0.6 * wl.clients)
        extra = {"injected_delay_seconds": delay_s} if delay_s else {}
        log.emit("round_end", round=r, ok=ok, participants=ok_clients, failed=failed,
                 duration=round(duration, 6), aggregation_seconds=0.004, **extra)
        if r % wl.eval_every == 0 or r == wl.rounds:
            accuracy = 0.975 * (1 - math.exp(-r / speed)) + float(rng.normal(0, 0.004))
            log.clock += 0.3
            log.emit("eval", round=r, accuracy=round(accuracy, 6), loss=1 - accuracy,
                     seconds=0.3)
            if not reached and accuracy >= wl.target_accuracy:
                reached = True
                log.emit("target_reached", round=r, accuracy=round(accuracy, 6),
                         target=wl.target_accuracy,
                         tta_seconds=round(log.clock - first - held, 6))
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
              "dropped_loss": 3, "dropped_rate": 4, "late_mean_us": 50.0},
        "1": {"label": "c0/down", "seen": 1200, "passed": 100, "held_total": 1100,
              "dropped_loss": 2, "late_mean_us": 70.0},  # a row from before dropped_rate
    },
    "kernel_queue_drops": 0,
    "delayline_cpu_s_rounds": 1.2,
    "delayline_cpu_s_per_round": 0.1,
}


MIB = 2**20
LOAD = (0.2, 0.3, 0.4)  # the machine's other CPU during round r: LOAD[r % 3] x its duration
ORDER_SEED = 7
HOLD_S = 2.5  # how long an interleaved server waits between its rounds


def _round_extra(
    cell: Cell, log: ParsedLog, positions: dict[int, int]
) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for e in log.of("round_end"):
        r, d = int(e["round"]), float(e["duration"])
        cpu = 0.9 * d
        proxy = 0.1 * d if cell.tls else 0.0
        dl = 0.02 if cell.net != "NET0" else None
        out[r] = {
            "position": positions.get(r),
            "cpu_seconds": round(cpu, 6),
            "cpu_proxy_seconds": round(proxy, 6),
            **({"cpu_delayline_seconds": dl} if dl is not None else {}),
            "cpu_other_seconds": round(LOAD[r % 3] * d, 6),
            "cpu_machine_seconds": round(cpu + (dl or 0.0) + LOAD[r % 3] * d, 6),
        }
    return out


def _resources(cell: Cell, extra: dict[int, dict[str, Any]]) -> dict[str, Any]:
    cpu = sum(x["cpu_seconds"] for x in extra.values())
    pods: dict[str, dict[str, dict[str, Any]]] = {
        "fl-server": {"fl-server": {"cpu_seconds": round(cpu * 0.2, 6),
                                    "memory_peak_bytes": 300 * MIB}},
    }
    for c in range(cell.workload.clients):
        pods[f"fl-client-{c}"] = {"fl-client": {"cpu_seconds": round(cpu * 0.15, 6),
                                                "memory_peak_bytes": 200 * MIB}}
    if cell.tls:
        for per in pods.values():
            per["ztfl-proxy"] = {"cpu_seconds": 0.1, "memory_peak_bytes": 20 * MIB}
    return {"source": "cgroup", "window": "the arm's own rounds", "pods": pods,
            "delayline_cpu_seconds": 0.02 * len(extra) if cell.net != "NET0" else None}


def build_results(out: Path, m: Matrix | None = None, *,
                  faults: dict[str, dict[str, Any]] | None = None,
                  slo: dict[str, list[dict[str, Any]]] | None = None,
                  design: bool = False,
                  arms: dict[str, dict[str, Any]] | None = None,
                  block_runs: dict[str, str] | None = None,
                  jitter: float = 0.12,
                  data_source: str = "synthetic") -> list[Cell]:
    """Store every cell of ``m`` in ``out``; ``faults[cell_id]`` passes to :func:`simulate`.

    ``design``: measured in blocks (see the module's docstring); ``arms[cell_id]``: more
    :func:`simulate` arguments for one arm (e.g. ``{"factor": 1.3}``); ``block_runs[cell_id]``
    the block run a cell was measured in (default: its block's; another one: unpaired);
    ``jitter``: every arm's own round-to-round noise and ``data_source`` the MNIST every
    run_start names (:func:`simulate`)."""
    m = m or matrix()
    store = ResultStore(out)
    store.prepare(m.to_dict(), resume=False)
    cells = m.cells()
    blocks: dict[str, list[Cell]] = {}
    for c in cells:
        blocks.setdefault(c.block, []).append(c)
    for i, cell in enumerate(cells):
        kw: dict[str, Any] = {"jitter": jitter, "data_source": data_source,
                              **(faults or {}).get(cell.id, {}), **(arms or {}).get(cell.id, {})}
        block = blocks[cell.block]
        order: list[list[str]] = []
        positions: dict[int, int] = {}
        design_row: dict[str, Any] | None = None
        if design:
            brng = np.random.default_rng([ORDER_SEED, *map(ord, cell.block)])
            kw.setdefault("shared", [float(x) for x in brng.lognormal(0.0, 0.2,
                                                                        cell.workload.rounds)])
            kw.setdefault("hold_s", HOLD_S)
            for r in range(1, cell.workload.rounds + 1):
                ids = [c.id for c in block]
                np.random.default_rng([ORDER_SEED, r, *map(ord, cell.block)]).shuffle(ids)
                order.append(ids)
                positions[r] = ids.index(cell.id)
            design_row = {
                "block": cell.block, "mode": "round", "order_seed": ORDER_SEED,
                "arms": [c.id for c in block], "position": block.index(cell),
                "block_run": (block_runs or {}).get(cell.id, f"run-{cell.block}"),
                "round_order": order,
            }
        if cell.inject_delay_ms:
            kw.setdefault("delay_s", cell.inject_delay_ms / 1000)
        text = simulate(cell, **kw)
        log = parse_events(text.splitlines(), cell.id)
        extra = _round_extra(cell, log, positions) if design else None
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
            round_extra=extra,
            resources=_resources(cell, extra) if extra else None,
            design=design_row,
        )
        if design:
            row["environment"] = {**row["environment"], "loadavg": [0.5 + 0.25 * (i % 3), 0.6,
                                                                    0.7]}
        row["finished_wall"] = 1_790_000_000.0 + 60 * i + 50
        if slo and cell.id in slo:
            row["slo"] = slo[cell.id]
        store.save(row, text.encode())
    return cells
