"""benchmarks/trust_check.py judges a known delay on the participants' path time: found when
it is there, MISSED (exit 1) when the delay arm carries none; bad input exits 2."""

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
