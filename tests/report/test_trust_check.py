"""benchmarks/trust_check.py judges a known delay on the participants' path time: found when
it is there, MISSED (exit 1) when the delay arm carries none; its A/A arms by their noise: one
seed's interval outside it is the 5% a perfect instrument allows, two are not, a small bias
in every seed is caught where fixed +-3% bounds let it pass, and a run too noisy to resolve
the gate's 5% is not trusted; bad input exits 2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from report_synth import build_results, matrix

ROOT = Path(__file__).resolve().parents[2]
TRUST = {"sec": ("SEC0", "SEC1"), "net": ("NET0",), "data": ("iid",), "seeds": (0, 1, 2),
         "checks": ("aa", "delay10ms")}


def _trust_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trust_check", ROOT / "benchmarks/trust_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _judge(tmp_path: Path, **kw: Any) -> tuple[int, dict[str, Any]]:
    results = tmp_path / "results"
    build_results(results, matrix(**TRUST), design=True, jitter=0.01, **kw)
    rc = _trust_check().main([str(results), "--json", str(tmp_path / "check.json")])
    return rc, json.loads((tmp_path / "check.json").read_text())


def test_a_known_delay_is_found_in_every_seed_by_its_path_time(tmp_path: Path) -> None:
    _, out = _judge(tmp_path)
    delay = out["arms"]["delay10ms"]
    assert delay["ok"] and len(delay["per_seed"]) == 3
    for seed in delay["per_seed"]:
        assert seed["ok"] and seed["path_ratio"]["ci_low"] > 1
        assert seed["path_diff"]["estimate"] == pytest.approx(0.010, abs=1e-5)
    assert delay["pooled_path"]["ci_low"] > 1


def test_a_delay_arm_without_its_delay_is_missed(tmp_path: Path) -> None:
    none = {f"SEC0-NET0-iid-s{s}-delay10ms": {"delay_s": 0.0} for s in (0, 1, 2)}
    rc, out = _judge(tmp_path, arms=none)
    assert rc == 1 and not out["ok"]
    delay = out["arms"]["delay10ms"]
    assert not delay["ok"] and not any(s["ok"] for s in delay["per_seed"])


# The synthetic SEC1 costs 3% (report_synth.SEC_FACTOR); here it is the near A/A it is live.
NEUTRAL_SEC1 = {f"SEC1-NET0-iid-s{s}": {"factor": 1 / 1.03} for s in (0, 1, 2)}


def _aa(**factors: float) -> dict[str, dict[str, Any]]:
    """The A/A arm of seed N scaled by factors["sN"], SEC1 neutral."""
    return {**NEUTRAL_SEC1, **{f"SEC0-NET0-iid-{s}-aa": {"factor": f} for s, f in factors.items()}}


def test_a_perfect_instrument_holds_every_criterion(tmp_path: Path) -> None:
    rc, out = _judge(tmp_path, arms=_aa())
    assert rc == 0 and out["ok"], out
    assert out["aa_seeds"] == {"excluding": 0, "of": 6, "allowed": 1, "ok": True}
    assert out["arms"]["aa"]["quiet"] and out["arms"]["aa"]["resolved"]


def test_one_seed_outside_its_noise_is_what_95_percent_intervals_allow(tmp_path: Path) -> None:
    _, out = _judge(tmp_path, arms=_aa(s0=1.06))
    assert [s["excludes_1"] for s in out["arms"]["aa"]["per_seed"]] == [True, False, False]
    assert out["aa_seeds"]["excluding"] == 1 and out["aa_seeds"]["ok"]
    # (the outlier widens the run's measured noise, so the synthetic 10 ms may go unfound)
    assert out["arms"]["aa"]["ok"] and out["arms"]["SEC1"]["ok"], out["arms"]["aa"]


def test_two_seeds_outside_their_noise_are_missed(tmp_path: Path) -> None:
    rc, out = _judge(tmp_path, arms=_aa(s0=1.06, s1=1.06))
    assert out["aa_seeds"]["excluding"] == 2 and not out["aa_seeds"]["ok"]
    assert rc == 1 and not out["ok"]


def test_a_small_bias_in_every_seed_is_caught_where_fixed_bounds_passed_it(
    tmp_path: Path,
) -> None:
    rc, out = _judge(tmp_path, arms=_aa(s0=1.012, s1=1.012, s2=1.012))
    aa = out["arms"]["aa"]
    # the criteria before 2026-12: each seed within +-3%, the pooled interval in [0.97, 1.03]
    assert all(abs(s["ratio"]["estimate"] - 1) <= 0.03 for s in aa["per_seed"])
    assert aa["pooled"]["ci_low"] >= 0.97 and aa["pooled"]["ci_high"] <= 1.03
    assert not aa["quiet"] and aa["pooled_family"]["ci_low"] > 1
    assert rc == 1


def test_a_run_too_noisy_to_resolve_the_gates_5_percent_is_not_trusted(tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(**TRUST), design=True, jitter=0.15, arms=_aa())
    rc = _trust_check().main([str(results), "--json", str(tmp_path / "check.json")])
    out = json.loads((tmp_path / "check.json").read_text())
    assert out["arms"]["aa"]["pooled"]["mde"] > 0.05 and not out["arms"]["aa"]["resolved"]
    assert rc == 1


@pytest.mark.parametrize("n", [0, 1, 3, 6, 9, 20, 60])
def test_allowed_exclusions_is_the_binomial_95th_percentile(n: int) -> None:
    from scipy import stats

    k = _trust_check().allowed_exclusions(n)
    assert stats.binom.sf(k, n, 0.05) <= 0.05
    assert k == 0 or stats.binom.sf(k - 1, n, 0.05) > 0.05


def test_a_directory_without_cells_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no cells/ directory"):
        _trust_check().main([str(tmp_path)])


def _findings(tmp_path: Path, **kw: Any) -> dict[str, str | None]:
    from pytest_ztfl.analysis import compare
    from pytest_ztfl.matrix_tests import check_finding
    from pytest_ztfl.results import ResultStore

    results = tmp_path / "rows"
    cells = build_results(results, matrix(**TRUST), design=True, jitter=0.01, **kw)
    rows = {r["cell"]["id"]: r for r in ResultStore(results).rows()}
    noise = compare.Noise.of_rows(rows.values())  # as the plugin's session gives it
    return {
        c.id: check_finding(c, rows[c.id], rows[f"SEC0-NET0-iid-s{c.seed}"], noise)
        for c in cells
        if c.check and c.check.startswith("delay")
    }


def test_the_plugins_instrument_warning_judges_the_same_path_time(tmp_path: Path) -> None:
    assert set(_findings(tmp_path / "found").values()) == {None}
    none = {f"SEC0-NET0-iid-s{s}-delay10ms": {"delay_s": 0.0} for s in (0, 1, 2)}
    missed = _findings(tmp_path / "missed", arms=none)
    assert len(missed) == 3
    for cid, text in missed.items():
        assert text is not None and text.startswith(f"{cid}: a known 10 ms per round was not "
                                                    "found in the participants' path time")
