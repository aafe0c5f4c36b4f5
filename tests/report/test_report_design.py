"""The report of a run measured in blocks: check arms kept apart, paired comparisons, the
measurement design, the instrument checks, where a round's time goes, and censoring times
that leave out the time a server was held between interleaved rounds."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from report_synth import HOLD_S, LOAD, build_results, matrix

from fl_app.events import read_events
from fl_app.summary import held_seconds
from pytest_ztfl.analysis import compare
from pytest_ztfl.report import load, write
from pytest_ztfl.report.calc import Analysis, analyse
from pytest_ztfl.report.fmt import num
from pytest_ztfl.results import ResultStore

# 4 blocks (NET0 x iid/noniid x seeds 0/1), each: SEC0, SEC3, an A/A arm, a 50 ms delay arm
CHECKED = {"net": ("NET0",), "checks": ("aa", "delay50ms")}
Made = tuple[Path, str, Analysis]


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _line(body: str, start: str) -> str:
    return next(x for x in body.splitlines() if x.startswith(start))


def _make(root: Path, **kw: Any) -> Made:
    results = root / "results"
    # rounds 3% apart within an arm: a 50 ms delay (6% of a NET0 round) stands out of the
    # instance noise the report borrows from the blocks' repeats (analysis.paired)
    build_results(results, matrix(**CHECKED), design=True, jitter=0.03, **kw)
    text = write(results, root / "report").read_text(encoding="utf-8")
    return results, text, analyse(load.load(results))


@pytest.fixture(scope="module")
def blocks(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return _make(tmp_path_factory.mktemp("blocks"))


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """An A/A arm made to differ (its rounds 1.5x), and one SEC3 arm measured in another
    block run than its SEC0 arm (a resumed matrix): unpaired."""
    return _make(tmp_path_factory.mktemp("odd"),
                 arms={"SEC0-NET0-iid-s0-aa": {"factor": 1.5}},
                 block_runs={"SEC3-NET0-iid-s1": "another-run"})


def _rows(results: Path) -> dict[str, dict[str, Any]]:
    return {r["cell"]["id"]: r for r in ResultStore(results).rows()}


def _noise(rows: dict[str, dict[str, Any]]) -> compare.Noise:
    return compare.Noise.of_rows(rows.values())


def test_check_arms_never_enter_the_sec_analysis(blocks: Made) -> None:
    results, text, a = blocks
    checks = {r.id for r in a.loaded.runs if r.check}
    assert len(checks) == 8
    assert not checks & {c.run.id for c in a.cells}
    assert all(r.check is None for g in a.groups.values() for r in g.runs)
    assert {k: len(g.runs) for k, g in a.groups.items() if k[0] == "SEC0"} == {
        ("SEC0", "NET0", "iid"): 2, ("SEC0", "NET0", "dirichlet-0.5"): 2}
    # A SEC0 check arm is never a baseline: every SEC3 cell is compared with the plain SEC0 arm
    # (the check arms sort after it, so a "last SEC0 of the block wins" rule would pick one).
    rows = _rows(results)
    for c in a.cells:
        if c.run.sec == "SEC3":
            assert c.baseline is not None and c.baseline.id == c.run.id.replace("SEC3", "SEC0")
            r50 = compare.ratio([(rows[c.run.id], rows[c.baseline.id])], 0.5, seed=c.run.seed,
                                noise=_noise(rows))
            assert c.ratios[0] == r50
    head = _section(text, "Seed study (ZeroTrust-FLBench) headline claims vs this run")
    line = _line(head, "| `sec3-p50-net0`")
    assert "SEC3/NET0: 48 rounds / 4 cells vs SEC0/NET0: 48 rounds / 4 cells; 4 blocks, paired" \
        in line
    fail = _line(head, "| `failure-every-config-le-2pct`")
    assert "0 of 48 rounds, 4 cells" in fail  # a SEC level's 4 cells, no check arm
    assert "n = 8 cells and 8 check arms" in _section(text, "Cells")
    for cid in checks:  # listed, but compared only under Instrument checks
        row = _line(_section(text, "Cells"), f"| `{cid}`")
        assert "check arm: see *Instrument checks*" in row
        assert f"`{cid}`" not in _section(text, "Where a round's time goes")
    groups = _section(text, "Cell groups (pooled over seeds)")
    assert "| SEC0 | NET0 | iid | 2 | 24 |" in groups


def test_cell_comparisons_pair_rounds_within_a_block_run(blocks: Made, odd: Made) -> None:
    for results, _, a in (blocks, odd):
        rows = _rows(results)
        for c in a.cells:
            if c.run.sec != "SEC3":
                continue
            assert c.baseline is not None
            same_run = (rows[c.run.id]["design"]["block_run"]
                        == rows[c.baseline.id]["design"]["block_run"])
            assert c.ratios[0].paired is same_run
            r = compare.ratio(
                [(rows[c.run.id], rows[c.baseline.id])], 0.5, seed=c.run.seed, noise=_noise(rows))
            # the noise is summed in another order from the report's runs: equal to rounding
            assert c.ratios[0] == replace(r, mde=pytest.approx(r.mde))
    unpaired = [c.run.id for c in odd[2].cells if c.ratios and not c.ratios[0].paired]
    assert unpaired == ["SEC3-NET0-iid-s1"]
    assert all(c.ratios[0].paired for c in blocks[2].cells if c.ratios)
    design = _section(odd[1], "Measurement design")
    assert "| comparisons of cells with their SEC0 arm | 3 of 4 paired (same block run), " \
        "1 unpaired |" in design
    head = _section(odd[1], "Seed study (ZeroTrust-FLBench) headline claims vs this run")
    assert "4 blocks, 3 of 4 blocks paired" in _line(head, "| `sec3-p50-net0`")


def test_measurement_design_section(blocks: Made) -> None:
    results, text, a = blocks
    body = _section(text, "Measurement design")
    assert text.index("## Measurement design") < text.index("## Cells")
    assert "| mode | round |" in body
    assert "| order seed | 7 |" in body
    assert "| blocks | 4 (same NET, data split, seed and fault); 4 block runs |" in body
    assert "| arms per block | 4 (4 blocks) |" in body
    assert "| comparisons of cells with their SEC0 arm | all 4 paired" in body
    assert "| comparisons of check arms with their SEC0 arm | all 8 paired" in body
    assert "| n per comparison (cell vs SEC0) | 12 rounds per arm |" in body
    assert "| n per pooled comparison (group vs SEC0) | 2 blocks, 24 rounds per arm" in body
    env = next(iter(_rows(results).values()))["environment"]
    assert f"| machine | {env['cpus']} CPUs, {env['cpu_model']}, " \
        f"{env['memory_bytes'] / 2**30:.1f} GiB memory |" in body
    # every round met LOAD[r % 3] x its duration of other CPU: median 0.3, max 0.4
    n_rounds = sum(len(r.rounds) for r in a.loaded.runs)
    assert (f"| load met by a round | median {median(LOAD):.2f}, max {max(LOAD):.2f} CPUs "
            f"over {n_rounds} rounds") in body
    averages = [r.environment["loadavg"] for r in a.loaded.runs]
    one = [x[0] for x in averages]
    assert (f"| load average | 1 / 5 / 15 min: median {median(one):.2f} / 0.60 / 0.70, "
            f"max {max(one):.2f} / 0.60 / 0.70 (`environment.loadavg` of 16 rows) |") in body


def test_rows_without_a_design_say_so(tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(net=("NET0",), data=("iid",), seeds=(0,)))
    text = write(results, tmp_path / "report").read_text(encoding="utf-8")
    body = _section(text, "Measurement design")
    assert "| design | not recorded (rows from before blocks)" in body
    assert "all 1 unpaired" in body
    assert "| load met by a round | not recorded" in body
    checks = _section(text, "Instrument checks")
    assert "No check arms in this run" in checks and "`--ztfl-checks=aa,delay10ms`" in checks
    parts = _section(text, "Where a round's time goes")
    line = _line(parts, "| `SEC3-NET0-iid-s0`")
    cols = [c.strip() for c in line.strip("|").split("|")]
    assert cols[2] != "not recorded"  # compute/path from the events
    # one block, no repeat of a comparison to measure instance noise: marked unreliable
    assert cols[6].endswith("]†")
    assert cols[7:] == ["not recorded"] * 5  # no cgroups, no resources in these rows


def test_instrument_checks_show_aa_within_noise_and_the_known_delay(blocks: Made) -> None:
    results, text, a = blocks
    body = _section(text, "Instrument checks")
    assert text.index("## Instrument checks") < text.index("## Cells")
    rows = _rows(results)
    aa = [x for x in body.splitlines() if x.startswith("| `SEC0-") and "-aa`" in x]
    assert len(aa) == 4 and all(x.endswith("| within noise |") for x in aa)
    assert "False alarms: 0 of 4 blocks; pooled over blocks: within noise." in body
    assert _line(body, "| **all aa arms** | pooled over 4 blocks | paired | 48 vs 48 |")
    # The A/A numbers are compare's on the rows (the instrument warning's computation).
    cid = "SEC0-NET0-iid-s0-aa"
    r = compare.ratio([(rows[cid], rows["SEC0-NET0-iid-s0"])], 0.5, seed=0, noise=_noise(rows))
    line = _line(body, f"| `{cid}`")
    assert f"| {r.estimate:.3f}x [{r.ci_low:.3f}, {r.ci_high:.3f}] | {r.mde:.1%} |" in line
    # The delay arm's rounds are its SEC0 arm's plus exactly 50 ms of communication.
    delay = [x for x in body.splitlines() if "-delay50ms`" in x or "all delay50ms" in x]
    assert len(delay) == 5
    for x in delay:
        cols = [c.strip() for c in x.strip("|").split("|")]
        assert cols[2] == "50" and cols[3] == "paired" and cols[6] == cols[8] == "yes"
        # exactly +50 ms, in an interval as wide as the blocks' instance noise makes it
        for diff in (cols[9], cols[10]):
            est, low, high = (float(v) for v in re.findall(r"[-+][\d.]+", diff))
            assert est == 50.0 and 0 < low < est < high
    cid = "SEC0-NET0-noniid-s1-delay50ms"
    base = rows["SEC0-NET0-noniid-s1"]
    r = compare.ratio([(rows[cid], base)], 0.5, seed=1, noise=_noise(rows))
    med = median(x["duration"] for x in base["metrics"]["rounds"])
    # the median of the rounds' ratios: (d + 0.05) / d between the two middle rounds' d
    assert math.isclose(r.estimate, (med + 0.05) / med, rel_tol=1e-3)
    assert r.ci_low > 1
    assert f"{r.estimate:.3f}x [{r.ci_low:.3f}, {r.ci_high:.3f}] (MDE {r.mde:.1%}) | yes" in \
        _line(body, f"| `{cid}`")
    p = compare.ratio([(rows[cid], base)], 0.5, "path_seconds", seed=1, noise=_noise(rows))
    assert p.ci_low > 1 and f"| {p.estimate:.3f}x [{p.ci_low:.3f}, " in _line(body, f"| `{cid}`")
    assert ("Found in the round's duration in 4 of 4 blocks; in the path time in 4 of 4 "
            "blocks.") in body
    pools = {p.check: p for p in a.check_pools}
    assert pools["delay50ms"].path_diff is not None
    assert math.isclose(pools["delay50ms"].path_diff.estimate, 0.05, abs_tol=2e-6)


def test_an_aa_arm_that_differs_is_a_false_alarm(odd: Made) -> None:
    body = _section(odd[1], "Instrument checks")
    line = _line(body, "| `SEC0-NET0-iid-s0-aa`")
    assert line.endswith("| FALSE ALARM (interval excludes 1) |")
    assert "False alarms: 1 of 4 blocks" in body
    others = [x for x in body.splitlines() if "-aa`" in x and "`SEC0-NET0-iid-s0-aa`" not in x]
    assert len(others) == 3 and all(x.endswith("| within noise |") for x in others)


def test_where_a_rounds_time_goes(blocks: Made) -> None:
    results, text, _ = blocks
    body = _section(text, "Where a round's time goes")
    assert "n = 8 cells" in body
    rows = _rows(results)
    for cid in ("SEC0-NET0-iid-s0", "SEC3-NET0-iid-s0"):
        rounds = rows[cid]["metrics"]["rounds"]
        cols = [c.strip() for c in _line(body, f"| `{cid}`").strip("|").split("|")]
        med = median(r["duration"] for r in rounds)
        assert cols[1] == "12" and cols[2] == num(med)
        assert cols[3] == num(median(r["compute_seconds"] for r in rounds))
        assert cols[4] == num(median(r["comm_seconds"] for r in rounds))
        assert cols[5] == num(median(r["path_seconds"] for r in rounds))
        assert cols[7] == num(median(r["cpu_seconds"] for r in rounds))
        assert cols[10] == "-"  # NET0: no delay line
        if cid.startswith("SEC0"):
            assert cols[6] == cols[8] == "-"  # the baseline itself
            assert cols[9] == "0" and cols[11] == "300 / 1100 (5 pods)"
        else:
            d = compare.difference([(rows[cid], rows["SEC0-NET0-iid-s0"])], 0.5,
                                   "path_seconds", seed=0, noise=_noise(rows))
            assert cols[6] == (f"{d.estimate * 1000:+.1f} ms "
                               f"[{d.ci_low * 1000:+.1f}, {d.ci_high * 1000:+.1f}]")
            cpu = compare.ratio([(rows[cid], rows["SEC0-NET0-iid-s0"])], 0.5,
                                "cpu_seconds", seed=0, noise=_noise(rows))
            assert cols[8].startswith(f"{cpu.estimate:.3f}x [{cpu.ci_low:.3f}, ")
            # the TLS proxies: 0.1 x the round; the largest pod holds a 20 MiB proxy too
            assert cols[9] == num(median(r["cpu_proxy_seconds"] for r in rounds))
            assert cols[11] == "320 / 1200 (5 pods)"


def test_censoring_time_leaves_out_the_time_held_between_rounds(blocks: Made) -> None:
    results, text, a = blocks
    table = _section(text, "Cells")
    for run in a.loaded.runs:
        log = read_events(results / "events" / f"{run.id}.jsonl")
        starts = [e["t"] for e in log.of("round_start")]
        end = log.of("run_end")[-1]["t"]
        held = held_seconds(log)
        assert held == pytest.approx(HOLD_S * (len(starts) - 1))
        elapsed = a.loaded.events[run.id].elapsed
        assert elapsed == pytest.approx(end - starts[0] - held)
        if run.tta_seconds is None:  # non-IID runs never reach 90% in 12 rounds
            line = _line(table, f"| `{run.id}`")
            assert f"censored (> {num(elapsed)})" in line
        else:  # the server's TTA leaves the held time out too: both on the run's own clock
            assert run.tta_seconds <= elapsed + 1e-6
    assert any(r.tta_seconds is None for r in a.loaded.runs)


def test_an_interleaved_rows_stored_verdicts_of_check_arms_are_not_slo_verdicts(
        tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(net=("NET0",), data=("iid",), seeds=(0,), checks=("aa",)),
                  design=True)
    verdict = {"metric": "per-round failure rate", "verdict": "pass", "message": "PASS"}
    for path in (results / "cells").glob("*.json"):
        row = json.loads(path.read_text())
        row["slo"] = [verdict]
        path.write_text(json.dumps(row))
    text = write(results, tmp_path / "report").read_text(encoding="utf-8")
    body = _section(text, "SLO verdicts")
    assert "n = 2 verdicts in 2 of 2 cells" in body
    assert "`SEC0-NET0-iid-s0-aa`" not in body
    assert "The verdicts of 1 check arm are not listed" in body


def test_malformed_design_resources_and_load_fields_cost_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(net=("NET0",), data=("iid",), seeds=(0,), checks=("aa",)),
                  design=True)
    odd_values: list[dict[str, Any]] = [
        {"mode": {"x": 1}, "arms": "all", "block": 5, "block_run": 7, "order_seed": [1]},
        {"arms": [], "block_run": None},
        {},
    ]
    for path, design in zip(sorted((results / "cells").glob("*.json")), odd_values, strict=True):
        row = json.loads(path.read_text())
        row["design"] = design
        row["resources"] = {"pods": {"p": "x", "q": {"c": {"memory_peak_bytes": "big"}},
                                     "r": {"c": {"memory_peak_bytes": True}}}}
        row["environment"]["loadavg"] = "high"
        for r in row["metrics"]["rounds"]:
            r["cpu_other_seconds"] = "lots"
        path.write_text(json.dumps(row))
    text = write(results, tmp_path / "report").read_text(encoding="utf-8")
    body = _section(text, "Measurement design")
    assert "| load met by a round | not recorded" in body
    assert "| load average | not recorded |" in body
    parts = _section(text, "Where a round's time goes")
    assert _line(parts, "| `SEC3-NET0-iid-s0`").endswith("| not recorded |")  # no memory
    # without a shared block run nothing pairs, and the report says so
    assert "all 1 unpaired" in body
