"""The delay line's batch window: chosen from its classes' delay spread (pure logic)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8s_fixtures.netem.delayline import MAX_WINDOW_S, MIN_WINDOW_S, DelayLine, pass_window
from k8s_fixtures.netem.models import ClassSpec
from k8s_fixtures.netem.process import window_config
from k8s_fixtures.netem.profiles import get_profile
from k8s_fixtures.netem.stats import std


def _specs(name: str) -> list[ClassSpec]:
    p = get_profile(name)
    return [ClassSpec(delay_ms=d.delay_ms, jitter_ms=d.jitter_ms, jitter_dist=d.jitter_dist)
            for d in (p.up, p.down)]


@pytest.mark.parametrize(("profile", "window_ms"), [("NET1", 1.0), ("NET2", 2.0), ("NET3", 2.0),
                                                    ("NET4", 4.0)])
def test_each_profile_gets_its_spread_within_the_bounds(profile: str, window_ms: float) -> None:
    assert pass_window(_specs(profile)) == pytest.approx(window_ms / 1e3)


def test_the_smallest_spread_decides_and_no_spread_keeps_the_floor() -> None:
    assert pass_window(_specs("NET2") + _specs("NET1")) == pytest.approx(1e-3)
    assert pass_window([ClassSpec(delay_ms=25)]) == MIN_WINDOW_S
    assert pass_window([]) == MIN_WINDOW_S
    # a uniform's jitter_ms is its half-width: 3 ms is a spread of 1.73 ms
    assert pass_window([ClassSpec(delay_ms=25, jitter_ms=3, jitter_dist="uniform")]) \
        == pytest.approx(3e-3 / math.sqrt(3))


@given(st.lists(st.tuples(st.floats(0, 50), st.sampled_from(["normal", "uniform",
                                                              "paretonormal"])),
                min_size=1, max_size=6))
def test_no_class_with_a_millisecond_of_spread_widens_by_more_than_5_percent(
        classes: list[tuple[float, str]]) -> None:
    specs = [ClassSpec(delay_ms=25, jitter_ms=j, jitter_dist=d) for j, d in classes]
    w = pass_window(specs)
    assert MIN_WINDOW_S <= w <= MAX_WINDOW_S
    for s in specs:
        spread = s.jitter_std_ms / 1e3
        if spread >= MIN_WINDOW_S:  # releases off by half a dithered gap: std^2 1.25 w^2/12
            assert math.sqrt(1 + 1.25 * w * w / (12 * spread * spread)) <= 1.051


def _passes(rng: random.Random, w: float, until: float) -> list[tuple[float, float]]:
    """A busy loop's passes: (time, gap to the next), gaps drawn evenly in [w/2, 3w/2)."""
    out, t = [], rng.uniform(0, w)
    while t < until:
        gap = w * (0.5 + rng.random())
        out.append((t, gap))
        t += gap
    return out


def _released(passes: list[tuple[float, float]], due: float) -> float:
    """The pass that releases a packet due at ``due``: the first whose time plus half its
    gap reaches it (delayline.run_python, dataplane.c dl_run)."""
    lo, hi = 0, len(passes) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if passes[mid][0] + passes[mid][1] / 2 >= due:
            hi = mid
        else:
            lo = mid + 1
    return passes[lo][0]


def test_dithered_passes_widen_a_spread_about_as_the_bound_says() -> None:
    """The bound's model, simulated with the loop's rule: delays of spread s = w, each
    released by the first pass reaching it; every release within 3/4 of a window."""
    rng = random.Random(3)
    s = w = 2e-3
    passes = _passes(rng, w, 30.0)
    sent = [rng.uniform(0.1, 29.8) for _ in range(20_000)]
    due = [t + rng.gauss(25e-3, s) for t in sent]
    delays = [_released(passes, d) - t for t, d in zip(sent, due, strict=True)]
    assert max(abs(t + x - d) for t, x, d in zip(sent, delays, due, strict=True)) <= 0.75 * w
    assert std(delays) / s == pytest.approx(math.sqrt(1 + 1.25 / 12), abs=0.015)


def test_a_reply_sent_at_a_pass_comes_back_at_any_time_not_whole_windows_later() -> None:
    """A reply leaves when the pass released what it answers; with gaps of exactly one window
    its delay took whole windows only (a lattice); dithered gaps keep it continuous."""
    rng = random.Random(4)
    w = 2e-3
    fixed = [(k * w, w) for k in range(15_000)]
    for passes, lattice in ((fixed, True), (_passes(rng, w, 30.0), False)):
        delays = []
        for k in range(100, len(passes) - 100, 10):
            sent = passes[k][0]
            delays.append(_released(passes, sent + rng.gauss(25e-3, w)) - sent)
        frac = [(d / w) % 1.0 for d in delays]
        on_lattice = sum(min(f, 1 - f) < 1e-6 for f in frac) / len(frac)
        assert (on_lattice == 1.0) if lattice else (on_lattice < 0.01), on_lattice


def _line(tmp_path: Path, specs: list[dict[str, Any]], **cfg: Any) -> DelayLine:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"status_path": str(tmp_path / "status.json"), **cfg,
                                "classes": [{"queue": q, "label": f"c{q}", "max_len": 64,
                                             "spec": sp} for q, sp in enumerate(specs, 1)]}))
    return DelayLine(path)


def test_the_delay_line_takes_its_window_from_its_classes_again_on_a_reload(
        tmp_path: Path) -> None:
    net2 = {"delay_ms": 25, "jitter_ms": 2}
    line = _line(tmp_path, [net2, net2])
    assert line.batch_s == pytest.approx(2e-3) and line.batch_ok
    assert line.transport()["batch_us"] == pytest.approx(2000)
    _line(tmp_path, [net2, {"delay_ms": 10, "jitter_ms": 1}])  # the config file, rewritten
    line.do_reload()
    assert line.error == ""
    assert line.batch_s == pytest.approx(1e-3)


def test_a_configured_window_stays(tmp_path: Path) -> None:
    line = _line(tmp_path, [{"delay_ms": 25, "jitter_ms": 2}], batch_us=500)
    assert line.batch_s == pytest.approx(5e-4)
    line.do_reload()
    assert line.batch_s == pytest.approx(5e-4)


def test_a_delay_under_two_windows_is_not_batched(tmp_path: Path) -> None:
    """A 3 ms delay with 2 ms of spread: a wait of one 2 ms window could add most of it."""
    line = _line(tmp_path, [{"delay_ms": 3, "jitter_ms": 2}])
    assert line.batch_s == pytest.approx(2e-3) and not line.batch_ok


def test_the_window_can_be_fixed_from_the_environment_and_bad_values_say_so() -> None:
    assert window_config("") == {} and window_config("  ") == {}
    assert window_config("1500") == {"batch_us": 1500.0}
    for bad in ("fast", "0", "-5", "nan", "2e6"):
        with pytest.raises(ValueError, match=r"^ZTFL_DELAYLINE_WINDOW_US: .* is not a window"):
            window_config(bad)
