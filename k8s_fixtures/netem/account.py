"""The delay line's account of one run: its counters between two snapshots of ``usage()``.

The delay line keeps cumulative counters per class (link direction) since it started, with the
release lateness as a running mean and max. Two snapshots (rounds released, run over) give the
rounds alone: packets seen, held and dropped in between, and the mean lateness of the packets
released in between (the delay line publishes the lateness sum and the count released, so
differences are exact). The max
cannot be split that way; it stays the whole run's. CPU is the difference of the process's
user + system time.
"""

from __future__ import annotations

from typing import Any


def between(before: dict[str, Any], after: dict[str, Any], rounds: int) -> dict[str, Any]:
    """``after``'s whole-run counters plus what happened since ``before`` (``rounds``: how
    many rounds ran in between, for the CPU per round)."""
    classes_before = before.get("classes") or {}
    during: dict[str, dict[str, Any]] = {}
    for q, c1 in (after.get("classes") or {}).items():
        c0 = classes_before.get(q, {})
        d = {k: c1.get(k, 0) - c0.get(k, 0)
             for k in ("seen", "passed", "held_total", "dropped_loss", "dropped_rate", "unparsed",
                       "released", "late_sum_us")}
        during[q] = {
            "label": c1.get("label"),
            **d,
            "late_mean_us": d["late_sum_us"] / d["released"] if d["released"] > 0 else None,
        }
    cpu0, cpu1 = before.get("delayline_cpu_s"), after.get("delayline_cpu_s")
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {
        "classes": after.get("classes") or {},
        "rounds": during,
        "kernel_queue_drops": after.get("kernel_queue_drops"),
        "transport": after.get("transport") or {},
        "delayline_cpu_s_rounds": cpu,
        "delayline_cpu_s_per_round": cpu / rounds if cpu is not None and rounds else None,
    }
