"""Profiles and plans as data: shipped values, validation errors, overrides, transfer times."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_fixtures.netem.plan import NetPlan, Step, parse_plan
from k8s_fixtures.netem.profiles import (
    ProfileError,
    get_profile,
    load_profiles,
    min_transfer_time_s,
    parse_profile,
    queue_limit_bytes,
    round_budget_warning,
)


def test_shipped_profiles_have_the_documented_values() -> None:
    p = load_profiles()
    assert set(p) >= {"NET0", "NET1", "NET2", "NET3", "NET4"}
    assert p["NET0"].is_null and p["NET0"].rtt_ms == 0
    assert p["NET1"].rtt_ms == 20
    assert p["NET2"].rtt_ms == 50 and p["NET2"].up.rate_mbit == 20
    assert p["NET2"].down.rate_mbit == 50
    assert p["NET3"].up.loss_pct == 1 and p["NET3"].down.loss_pct == 1
    assert p["NET3"].rtt_ms == p["NET2"].rtt_ms
    assert p["NET4"].rtt_ms == 150
    for name in ("NET1", "NET2", "NET3", "NET4"):
        assert p[name].needs_delay_line and not p[name].is_null


def _err(raw: dict[str, object], name: str = "X") -> str:
    with pytest.raises(ProfileError) as e:
        parse_profile(name, raw)
    msg = str(e.value)
    assert "\n" not in msg and f"profile {name}" in msg
    return msg


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"up": {"delay_ms": -1}}, "up.delay_ms", "below the minimum"),
    ({"down": {"delay_ms": 10_001}}, "down.delay_ms", "above the maximum"),
    ({"up": {"delay_ms": 5, "jitter_ms": 6}}, "up.jitter_ms", "exceeds"),
    ({"up": {"loss_pct": 51}}, "up.loss_pct", "above the maximum 50"),
    ({"up": {"loss_pct": -0.1}}, "up.loss_pct", "below"),
    ({"down": {"rate_mbit": 0.001}}, "down.rate_mbit", "below the minimum 0.01"),
    ({"down": {"rate_mbit": "fast"}}, "down.rate_mbit", "not a number"),
    ({"up": {"delay_ms": float("nan")}}, "up.delay_ms", "not finite"),
    ({"up": {"jitter_dist": "cauchy", "jitter_ms": 0}}, "up.jitter_dist", "not one of"),
    ({"up": {"loss_model": "markov"}}, "up.loss_model", "not one of"),
    ({"up": {"delay_ms": 1, "dleay": 3}}, "up.dleay", "unknown field"),
    ({"upp": {}}, "upp", "unknown field"),
    ({"up": {"queue_limit_bytes": 100000}}, "up.queue_limit_bytes", "without rate_mbit"),
    ({"up": {"loss_pct": 40, "loss_model": "gilbert", "loss_burst": 5}}, "up.loss_burst",
     "too long"),
    ({"up": {"reorder": "yes"}}, "up.reorder", "true/false"),
    ({"extends": "NOPE"}, "extends", "unknown profile"),
    ({"seed": -3}, "seed", "integer"),
])
def test_validation_names_profile_and_field(raw: dict[str, object], field: str,
                                            words: str) -> None:
    msg = _err(raw)
    assert f"field {field}" in msg and words in msg


def test_unknown_profile_name_is_one_line_listing_known() -> None:
    with pytest.raises(ProfileError, match=r"^profile NET9: unknown profile \(known: NET0, "):
        get_profile("NET9")


def test_user_file_overrides_and_extends(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("profiles:\n"
                 "  NET2:\n    extends: NET2\n    up: {rate_mbit: 5}\n"
                 "  SAT:\n    extends: NET4\n    up: {delay_ms: 300}\n    down: {delay_ms: 300}\n"
                 "  NET1:\n    description: replaced\n")
    p = load_profiles(f)
    assert p["NET2"].up.rate_mbit == 5 and p["NET2"].up.delay_ms == 25
    assert p["NET2"].down.rate_mbit == 50
    assert p["SAT"].rtt_ms == 600 and p["SAT"].up.rate_mbit == 10
    assert p["NET1"].is_null and p["NET1"].description == "replaced"
    assert p["NET4"].rtt_ms == 150  # untouched


def test_user_file_errors_name_the_profile(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("profiles:\n  BAD:\n    up: {loss_pct: 75}\n")
    with pytest.raises(ProfileError, match=r"profile BAD: field up\.loss_pct: 75"):
        load_profiles(f)
    f.write_text("profiles: [1, 2\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profiles(f)


def test_min_transfer_time_and_round_budget() -> None:
    net2 = get_profile("NET2")
    # 4.8 MB paper CNN up at 20 Mbit/s: 25 ms + 4.8e6 * 1514/1448 * 8 / 20e6
    t = min_transfer_time_s(net2, 4_800_000, "up")
    assert t == pytest.approx(0.025 + 4_800_000 * 1514 / 1448 * 8 / 20e6)
    assert min_transfer_time_s(net2, 0, "down") == pytest.approx(0.025)
    assert min_transfer_time_s(get_profile("NET0"), 10**9) == 0
    assert round_budget_warning(net2, 4_800_000, 60.0) is None
    w = round_budget_warning(get_profile("NET4"), 4_800_000, 5.0)
    assert w is not None and "NET4" in w and "8.1" in w
    with pytest.raises(ValueError):
        min_transfer_time_s(net2, -1)


def test_queue_limit_is_one_bdp_or_the_setting() -> None:
    net4 = get_profile("NET4")
    q = queue_limit_bytes(net4, "up")
    assert q is not None and q >= 10e6 / 8 * 0.150
    assert queue_limit_bytes(get_profile("NET0"), "up") is None
    p = parse_profile("Q", {"up": {"rate_mbit": 1, "queue_limit_bytes": 20000}})
    assert queue_limit_bytes(p, "up") == 20000


def test_plan_per_client_and_schedule() -> None:
    table = load_profiles()
    plan = parse_plan({"default": "NET1", "clients": {"c1": "NET4"},
                       "schedule": [{"at_s": 5, "default": "NET3"},
                                    {"at_s": 9, "clients": {"c0": "NET0"}}]}, table)
    names = ["ztx-c0", "ztx-c1"]
    start = plan.resolve(names)
    assert {k: v.name for k, v in start.items()} == {"ztx-c0": "NET1", "ztx-c1": "NET4"}
    s1 = plan.resolve_step(plan.schedule[0], start)
    assert {v.name for v in s1.values()} == {"NET3"}
    s2 = plan.resolve_step(plan.schedule[1], s1)
    assert s2["ztx-c0"].name == "NET0" and s2["ztx-c1"].name == "NET3"
    assert {p.name for p in plan.profiles()} == {"NET0", "NET1", "NET3", "NET4"}
    with pytest.raises(ProfileError, match=r"clients\.c7: no client link matches"):
        NetPlan(table["NET1"], {"c7": table["NET2"]}).resolve(names)
    with pytest.raises(ProfileError, match="not in time order"):
        parse_plan({"schedule": [{"at_s": 5, "default": "NET1"},
                                 {"at_s": 1, "default": "NET2"}]}, table)
    with pytest.raises(ProfileError, match="unknown profile"):
        parse_plan({"default": "NET7"}, table)
    assert isinstance(plan.schedule[0], Step)


finite = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=300, deadline=None)
@given(delay=finite, jitter=finite, loss=finite, rate=st.one_of(st.none(), finite))
def test_any_numbers_either_parse_within_bounds_or_raise_profile_error(
        delay: float, jitter: float, loss: float, rate: float | None) -> None:
    raw = {"up": {"delay_ms": delay, "jitter_ms": jitter, "loss_pct": loss, "rate_mbit": rate}}
    try:
        p = parse_profile("H", raw)
    except ProfileError as e:
        assert str(e).startswith("profile H: field up.")
        return
    assert 0 <= p.up.jitter_ms <= p.up.delay_ms <= 10_000
    assert 0 <= p.up.loss_pct <= 50
    assert p.up.rate_mbit is None or 0.01 <= p.up.rate_mbit <= 100_000
    assert all(math.isfinite(x) for x in (p.up.delay_ms, p.up.jitter_ms, p.up.loss_pct))
