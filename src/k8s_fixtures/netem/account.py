"""The delay line's account of one run: its counters between two snapshots of ``usage()``.

The delay line keeps cumulative counters per class (link direction) since it started, with the
release lateness as a running mean and max. Two snapshots (rounds released, run over) give the
rounds alone: packets seen, held and dropped in between, and the mean lateness of the packets
released in between (running sums are mean x released, so differences are exact). The max
cannot be split that way; it stays the whole run's. CPU is the difference of the process's
user + system time.
"""

from __future__ import annotations

from typing import Any


def _released(c: dict[str, Any]) -> int:
    return int(c.get("held_total", 0)) - int(c.get("held_now", 0))


def between(before: dict[str, Any], after: dict[str, Any], rounds: int) -> dict[str, Any]:
    """``after``'s whole-run counters plus what happened since ``before`` (``rounds``: how
    many rounds ran in between, for the CPU per round)."""
    classes_before = before.get("classes") or {}
    during: dict[str, dict[str, Any]] = {}
    for q, c1 in (after.get("classes") or {}).items():
        c0 = classes_before.get(q, {})
        released = _released(c1) - _released(c0)
        late = float(c1.get("late_mean_us", 0.0)) * _released(c1) - float(
            c0.get("late_mean_us", 0.0)
        ) * _released(c0)
        during[q] = {
            "label": c1.get("label"),
            **{
                k: int(c1.get(k, 0)) - int(c0.get(k, 0))
                for k in ("seen", "passed", "held_total", "dropped_loss")
            },
            "late_mean_us": late / released if released > 0 else None,
        }
    cpu0, cpu1 = before.get("delayline_cpu_s"), after.get("delayline_cpu_s")
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {
        "classes": after.get("classes") or {},
        "rounds": during,
        "kernel_queue_drops": after.get("kernel_queue_drops"),
        "delayline_cpu_s_rounds": cpu,
        "delayline_cpu_s_per_round": cpu / rounds if cpu is not None and rounds else None,
    }
