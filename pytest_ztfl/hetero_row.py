"""The row's ``heterogeneity`` record: per client what it was drawn to be (device class, NET
profile, CPU limit, the rounds it was to sit out) beside what the run shows of it (the rounds
the server's ``round_start`` left it out of, the rounds it took part in, its median training
time, the NET profile the overlay applied to its link, its cgroup's CPU throttling), and per
round which client the server waited for last and its class (the round's slowest participating
class).

Read from the server's event log and the harness's own observations, not from the draw alone:
a draw the run did not follow shows as ``rounds_absent`` differing from ``rounds_absent_drawn``.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from fl_app.events import ParsedLog
from pytest_ztfl.matrix import Cell


def _applied_profiles(overlays: dict[str, Any]) -> dict[int, str]:
    """Client id -> the NET profile the local overlay last applied to its link (its
    ``changes``, keyed ``<netns>.fl-client-<i>``)."""
    changes = overlays.get("net", {}).get("changes") or []
    if not changes:
        return {}
    out: dict[int, str] = {}
    for key, name in (changes[-1].get("profiles") or {}).items():
        tail = str(key).rpartition(".fl-client-")[2]
        if tail.isdigit():
            out[int(tail)] = str(name)
    return out


def record(
    cell: Cell,
    log: ParsedLog,
    overlays: dict[str, Any],
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The cell's heterogeneity record (None: its clients are alike)."""
    if cell.hetero is None:
        return None
    draws = cell.clients()
    klass = {d.client: d.device_class for d in draws}
    absent: dict[int, list[int]] = {d.client: [] for d in draws}
    for e in log.of("round_start"):
        for c in e.get("absent", []):
            absent.setdefault(int(c), []).append(int(e["round"]))
    updates: dict[int, list[dict[str, Any]]] = {}
    for e in log.of("client_update"):
        updates.setdefault(int(e["round"]), []).append(e)
    applied = _applied_profiles(overlays)
    clients = []
    for d in draws:
        mine = [u for us in updates.values() for u in us if int(u["client"]) == d.client]
        train = [float(u["train_seconds"]) for u in mine]
        ev = (evidence or {}).get(str(d.client), {})
        clients.append({
            **d.to_dict(),
            "net": d.net or cell.net,
            "rounds_absent_drawn": list(d.absent),
            "rounds_absent": sorted(absent.get(d.client, [])),
            "rounds_participated": len(mine),
            "median_train_seconds": round(median(train), 6) if train else None,
            "train_seconds_total": round(sum(train), 6),
            "net_applied": applied.get(d.client),
            "throttled_seconds": ev.get("throttled_seconds"),
        })
    rounds = []
    for e in log.of("round_end"):
        r = int(e["round"])
        ups = updates.get(r, [])
        last = max(ups, key=lambda u: float(u["t"])) if ups else None
        rounds.append({
            "round": r,
            "ok": bool(e["ok"]),
            "duration": float(e["duration"]),
            "absent": sorted(c for c, rs in absent.items() if r in rs),
            "slowest_client": int(last["client"]) if last else None,
            "slowest_class": klass.get(int(last["client"])) if last else None,
            "classes": sorted({klass.get(int(u["client"]), "?") for u in ups}),
        })
    return {**cell.hetero.to_dict(), "clients": clients, "rounds": rounds}
