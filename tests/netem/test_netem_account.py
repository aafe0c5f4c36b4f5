"""The delay line's account between two snapshots (pure arithmetic on its counters)."""

from __future__ import annotations

import pytest

from k8s_fixtures.netem.account import between


def snap(held_total: int, held_now: int, late_mean_us: float, cpu: float | None,
         seen: int = 0, dropped: int = 0) -> dict[str, object]:
    return {
        "classes": {"7": {"label": "c/up", "seen": seen, "passed": seen - held_total - dropped,
                          "held_total": held_total, "held_now": held_now,
                          "dropped_loss": dropped, "late_mean_us": late_mean_us,
                          "released": held_total - held_now,
                          "late_sum_us": late_mean_us * (held_total - held_now),
                          "late_max_us": 5000.0}},
        "kernel_queue_drops": 0,
        "delayline_cpu_s": cpu,
    }


def test_the_rounds_mean_lateness_is_exact_from_the_published_sums() -> None:
    # 100 packets released before at a mean of 1000 us (a slow start-up), then 300 more at
    # 100 us: the running mean after is (100 * 1000 + 300 * 100) / 400 = 325 us.
    before = snap(held_total=102, held_now=2, late_mean_us=1000.0, cpu=1.5, seen=110)
    after = {**snap(held_total=400, held_now=0, late_mean_us=325.0, cpu=2.5, seen=450,
                    dropped=4), "transport": {"dataplane": "c", "underruns": 0}}
    acc = between(before, after, rounds=4)
    assert acc["transport"] == {"dataplane": "c", "underruns": 0}  # which loop ran, in the row
    r = acc["rounds"]["7"]
    assert r["late_mean_us"] == pytest.approx(100.0)
    assert (r["seen"], r["held_total"], r["dropped_loss"]) == (340, 298, 4)
    assert acc["classes"] == after["classes"]  # the whole cell's, max included
    assert acc["delayline_cpu_s_rounds"] == pytest.approx(1.0)
    assert acc["delayline_cpu_s_per_round"] == pytest.approx(0.25)


def test_nothing_released_and_no_cpu_reading_give_none_not_a_number() -> None:
    s = snap(held_total=5, held_now=5, late_mean_us=0.0, cpu=None)
    acc = between(s, s, rounds=0)
    assert acc["rounds"]["7"]["late_mean_us"] is None
    assert acc["delayline_cpu_s_rounds"] is None and acc["delayline_cpu_s_per_round"] is None
