"""The result row of one cell (schema ``ztfl.run/1``): built from the server's event log plus
what the harness observed (proofs, overlays, pod status), so every number traces to events.

Row fields:
    schema, cell{id, sec, net, data, seed, mtls, workload}, success, success_reason, error,
    metrics{rounds[...], rounds_planned, durations, final_accuracy, accuracy_by_round,
    tta_seconds, target, failures_by_class, identities, data_source, ...}
    (fl_app.summary.RunSummary),
    failures_by_class (the harness's taxonomy: netpol, mtls, resource, netem, workload,
    unclassified: pytest_ztfl.taxonomy), failures[{round, client, event, class, why}],
    evidence{client{denied_egress, tcp_timeouts, dropped_other, throttled_seconds, ...},
    server{handshake_refusals}} (what the taxonomy looked at, outside the proofs),
    proofs[{name, control, passed, detail}], overlays{netpol, mtls, net}, pods[...],
    backend{name, note, parallel}, resources{source, window, pods{pod{container{cpu_seconds,
    memory_peak_bytes}}}, delayline_cpu_seconds}, design{block, mode, order_seed, arms,
    position, block_run, round_order, phases{deploy, prove, start, joined, rounds, finish,
    collect, cleanup: the block's wall seconds per phase}}, environment{...}, started_wall,
    finished_wall, extra_info, events_file (added by the store); heterogeneity{name, classes,
    clients[{client, class, net, cpu, availability, rounds_absent, rounds_absent_drawn,
    rounds_participated, median_train_seconds, train_seconds_total, net_applied,
    throttled_seconds}],
    rounds[{round, duration, absent, slowest_client, slowest_class, classes}]} only in a cell
    with heterogeneity (pytest_ztfl.hetero_row).

Each entry of metrics.rounds also has compute_seconds (slowest training + aggregation),
comm_seconds (the rest), path_seconds (mean over participants of their exchange's time
outside training: what a control's cost shows in; fl_app.summary.path_time), and where the
harness saw them: position (in its round's order), cpu_seconds, cpu_proxy_seconds,
cpu_delayline_seconds, cpu_by_container, cpu_machine_seconds, cpu_other_seconds (the machine's
CPU that was not this arm's: the load the round met), steal_seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from statistics import median
from typing import Any

from fl_app.events import ParsedLog
from fl_app.summary import RunSummary, summarize
from pytest_ztfl import environment, hetero_row, taxonomy
from pytest_ztfl.matrix import Cell
from pytest_ztfl.taxonomy import Label

SCHEMA = "ztfl.run/1"


@dataclass(frozen=True)
class Context:
    """What the session knows of a run that the cell's arm does not, handed down so the row is
    whole when it is built: the user's project (``environment.project``), the parallelism, the
    NET calibration the cell's links were checked against."""

    project: dict[str, Any] | None = None
    parallel: int | None = None
    calibration: dict[str, Any] | None = None

    def fill(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` (being built) with the session's part in it."""
        if self.project is not None:
            row["environment"]["project"] = self.project
        if self.parallel is not None:
            row["backend"]["parallel"] = self.parallel
        if self.calibration is not None:
            row["overlays"].setdefault("net", {})["calibration"] = self.calibration
            row["extra_info"]["calibration"] = self.calibration
        return row


def calibration_of(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row's ``overlays.net.calibration`` as :meth:`Context.fill` wrote it (``ref``:
    the file under the results directory, ``passed``, ``note``); {} in a row without one. The
    one reader of that place: the store keeps the files rows name, the report shows them."""
    overlays = row.get("overlays")
    net = overlays.get("net") if isinstance(overlays, dict) else None
    cal = net.get("calibration") if isinstance(net, dict) else None
    return cal if isinstance(cal, dict) else {}


def success(summary: RunSummary, pods: list[dict[str, Any]]) -> tuple[bool, str]:
    """The seed study's definition: every round done with >= min participants, no pod
    restarts, no gRPC timeouts."""
    if not summary.finished:
        return False, "the server's event log has no run_end"
    if len(summary.rounds) < summary.rounds_planned:
        return False, f"only {len(summary.rounds)} of {summary.rounds_planned} rounds ran"
    if summary.failed_rounds:
        return False, f"{summary.failed_rounds} rounds had too few participants"
    restarts = sum(int(p.get("restarts", 0)) for p in pods)
    if restarts:
        return False, f"{restarts} pod restarts"
    timeouts = summary.failures_by_class.get("timeout", 0)
    if timeouts:
        return False, f"{timeouts} client updates timed out"
    return True, "all rounds completed with enough participants"


def _medians(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per-cell medians of the round's parts over completed rounds (pytest-benchmark
    ``extra_info``: the benchmark's own statistics are of the whole round)."""
    ok = [r for r in rounds if r["ok"]]
    out: dict[str, float | None] = {}
    for key in ("compute_seconds", "comm_seconds", "path_seconds", "cpu_seconds",
                "cpu_proxy_seconds", "cpu_delayline_seconds", "cpu_other_seconds"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        out[f"median_{key}"] = round(float(median(vals)), 6) if vals else None
    return out


def build(
    cell: Cell,
    log: ParsedLog,
    *,
    started_wall: float,
    proofs: list[dict[str, Any]],
    overlays: dict[str, Any],
    pods: list[dict[str, Any]],
    backend: dict[str, Any],
    labels: list[Label] | None = None,
    evidence: dict[str, Any] | None = None,
    error: str | None = None,
    round_extra: dict[int, dict[str, Any]] | None = None,
    resources: dict[str, Any] | None = None,
    design: dict[str, Any] | None = None,
    context: Context | None = None,
) -> dict[str, Any]:
    """One cell's row. ``labels``: every failure labelled by the taxonomy from the harness's
    evidence (None: from the server's log alone, as a run without evidence); ``round_extra``
    what the
    harness saw of each round (its position in the block's order, CPU by part), merged into
    ``metrics.rounds``; ``resources`` the pods' CPU and peak memory; ``design`` the block,
    its mode and orders (pytest_ztfl.design)."""
    summary = summarize(log)
    ok, why = success(summary, pods)
    if error:
        ok, why = False, error
    metrics = summary.to_dict()
    for rd in metrics["rounds"]:
        rd.update((round_extra or {}).get(rd["round"], {}))
    metrics["accuracy_by_round"] = {str(k): v for k, v in summary.accuracy_by_round.items()}
    if labels is None:
        labels = taxonomy.classify(taxonomy.RunEvidence(cell.workload.clients, log, {}))
    failures = taxonomy.counts(labels)
    extra = {
        "cell": cell.id,
        "sec": cell.sec,
        "net": cell.net,
        "data": cell.data,
        "seed": cell.seed,
        "mtls": cell.mtls,
        "success": ok,
        "tta_seconds": summary.tta_seconds,
        "final_accuracy": summary.final_accuracy,
        "failures_by_class": failures,
        "proofs": {p["name"]: p["passed"] for p in proofs},
        "net_mechanism": overlays.get("net", {}).get("mechanism"),
        "netpol_action": overlays.get("netpol", {}).get("action"),
        "backend": backend.get("name"),
        "check": cell.check,
        "heterogeneity": cell.hetero.name if cell.hetero else None,
        "block": (design or {}).get("block"),
        "design_mode": (design or {}).get("mode"),
        "order_seed": (design or {}).get("order_seed"),
        **_medians(metrics["rounds"]),
    }
    load = [round(x, 2) for x in os.getloadavg()]
    het = hetero_row.record(cell, log, overlays, evidence)
    return (context or Context()).fill({
        **({"heterogeneity": het} if het is not None else {}),
        "schema": SCHEMA,
        "cell": cell.to_dict(),
        "success": ok,
        "success_reason": why,
        "error": error,
        "metrics": metrics,
        "failures_by_class": failures,
        "failures": [lb.to_dict() for lb in labels],
        "evidence": evidence or {},
        "proofs": proofs,
        "overlays": overlays,
        "pods": pods,
        "backend": backend,
        "resources": resources or {},
        "design": design or {},
        # capture() is the machine (cached per process); the load is of this moment
        "environment": {**environment.capture(), "loadavg": load},
        "started_wall": started_wall,
        "finished_wall": time.time(),
        "extra_info": extra,
    })
