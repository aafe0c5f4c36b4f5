"""report.write on a realistic results directory: report.md's content and the figures."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from report_synth import build_results, matrix

from pytest_ztfl.analysis import compare
from pytest_ztfl.matrix import Cell
from pytest_ztfl.report import main_report, write
from pytest_ztfl.report.fmt import UNRELIABLE
from pytest_ztfl.results import ResultStore

FIGURES = ("overhead_heatmap.png", "p99_heatmap.png", "round_duration_ecdf.png", "tta.png",
           "failure_rate_heatmap.png", "success_counts.png", "failures_by_class.png",
           "convergence.png")  # all drawn: FAULTY has failures and is not successful
FAULTY = "SEC3-NET2-noniid-s1"
SLO = [{"metric": "p99 round duration SEC3/SEC0", "verdict": "inconclusive", "estimate": 1.4,
        "ci_low": 0.9, "ci_high": 1.9, "limit": 1.2, "n": [12, 12], "confidence": 0.95,
        "message": "INCONCLUSIVE p99 round duration SEC3/SEC0: 1.4x (95% CI [0.9x, 1.9x]) > "
                   "limit 1.2x, n=12 vs 12"}]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Cell], str]:
    root = tmp_path_factory.mktemp("report")
    results = root / "results"
    cells = build_results(results, faults={FAULTY: {"fail_rounds": frozenset({5}), "timeouts": 1}},
                          slo={"SEC3-NET0-iid-s0": SLO})
    path = write(results, root / "report")
    return results, path, cells, path.read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_report_names_every_cell_with_its_numbers(made: tuple[Path, Path, list[Cell], str]) -> None:
    _, path, cells, text = made
    assert path.name == "report.md"
    table = _section(text, "Cells")
    for cell in cells:
        assert f"`{cell.id}`" in table
    assert "n = 16 cells" in table
    assert "12/12" in table and "11/12" in table  # completed of planned rounds
    faulty = next(line for line in table.splitlines() if FAULTY in line)
    assert "NO: 1 rounds had too few participants" in faulty
    assert "mtls=3" in faulty and "unclassified=1" in faulty  # a timeout with no evidence
    assert "2/2" in faulty  # proofs passed
    assert "censored (>" in faulty  # non-IID runs never reach 90% in 12 rounds


def test_every_table_names_its_source_and_n(made: tuple[Path, Path, list[Cell], str]) -> None:
    text = made[3]
    for title in ("Run metadata", "Cells", "Cell groups (pooled over seeds)",
                  "Seed study (ZeroTrust-FLBench) headline claims vs this run", "SLO verdicts",
                  "NET emulation during the runs", "Measurement design",
                  "Where a round's time goes"):
        body = _section(text, title)
        assert "runs.jsonl" in body, title
        assert re.search(r"\bn = \d+|\d+ rounds", body), title
    assert "events/<id>.jsonl" in _section(text, "Cells")


def test_metadata_shows_environment_matrix_and_mechanisms(
        made: tuple[Path, Path, list[Cell], str]) -> None:
    meta = _section(made[3], "Run metadata")
    rows = ResultStore(made[0]).rows()
    assert "report-test: SEC SEC0, SEC3; NET NET0, NET2" in meta
    assert "16 of 16 have a result" in meta
    assert "local (network namespaces)" in meta
    assert "delayline" in meta and "nftables" in meta and "sidecar" in meta
    assert str(rows[0]["environment"]["kernel"]) in meta
    commit = rows[0]["environment"]["git_commit"]
    assert (commit or "not recorded") in meta


def test_emulation_table_lists_the_delay_line_account_of_each_shaped_cell(
        made: tuple[Path, Path, list[Cell], str]) -> None:
    body = _section(made[3], "NET emulation during the runs")
    lines = [line for line in body.splitlines() if line.startswith("| `")]
    assert sorted(line.split("`")[1] for line in lines) == sorted(
        c.id for c in made[2] if c.net == "NET2")
    # seen, held, lateness mean (held-weighted) and max, loss and rate drops, queue drops,
    # ms/round
    assert all("| delayline | 2200 | 2000 | 61 | 900 | 5 | 4 | 0 | 100.0 |" in line
               for line in lines), lines
    assert "n = 8 cells" in body
    assert "| cells measured at once | 1 |" in _section(made[3], "Run metadata")


def test_headline_table_matches_compare_on_the_same_rows(
        made: tuple[Path, Path, list[Cell], str]) -> None:
    results, _, _, text = made
    head = _section(text, "Seed study (ZeroTrust-FLBench) headline claims vs this run")
    for cid in ("sec3-p50-net0", "sec3-p50-net2", "sec3-p99-net0", "sec3-p99-net2",
                "net2-p99-sec0", "additive-sec3-net2", "failure-every-config-le-2pct"):
        assert f"| `{cid}` (" in head, cid
    assert "seed study claimed" not in head  # the study's values are its own column now
    # Traceable: recompute from the stored rows with analysis.compare, one pair of rows per
    # block (same data split and seed) in treatment-id order, bootstrap seed 0.
    rows = ResultStore(results).rows()

    def pairs(sec: str, net: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        by = {(r["cell"]["sec"], r["cell"]["net"], r["cell"]["data"], r["cell"]["seed"]): r
              for r in rows}
        return [(t, by["SEC0", net, t["cell"]["data"], t["cell"]["seed"]])
                for t in sorted(rows, key=lambda r: r["cell"]["id"])
                if (t["cell"]["sec"], t["cell"]["net"]) == (sec, net)]

    for q, cid in ((0.5, "sec3-p50-net0"), (0.99, "sec3-p99-net0")):
        ratio = compare.ratio(pairs("SEC3", "NET0"), q, seed=0)
        line = next(x for x in head.splitlines() if x.startswith(f"| `{cid}`"))
        assert (f"{ratio.estimate:.3f}x [{ratio.ci_low:.3f}, {ratio.ci_high:.3f}]"
                f"{'' if ratio.reliable else UNRELIABLE} (MDE {ratio.mde:.1%})") in line
        # these rows predate blocks: no block run, so nothing pairs
        assert ("SEC3/NET0: 48 rounds / 4 cells vs SEC0/NET0: 48 rounds / 4 cells; 4 blocks, "
                "unpaired") in line
    # NET2 holds the cell with a failed round: only completed rounds enter the statistic
    ratio2 = compare.ratio(pairs("SEC3", "NET2"), 0.99, seed=0)
    line2 = next(x for x in head.splitlines() if x.startswith("| `sec3-p99-net2`"))
    assert f"{ratio2.estimate:.3f}x [{ratio2.ci_low:.3f}, {ratio2.ci_high:.3f}]" in line2
    assert "SEC3/NET2: 47 rounds / 4 cells vs SEC0/NET2: 48 rounds / 4 cells" in line2
    assert "not testable here: too few rounds for p99 (47 per arm" in line2
    # failures: ours counts failed rounds of planned ones, the study's failure events per
    # round (a round with three failed clients counts three), averaged over runs
    fail = next(x for x in head.splitlines() if x.startswith("| `failure-every-config-le-2pct`"))
    assert f"SEC3/NET2 {100 / 48:.3g}% [" in fail and "1 of 48 rounds, 4 cells" in fail
    events = [sum(sum(r.get("failures", {}).values()) for r in row["metrics"]["rounds"])
              / len(row["metrics"]["rounds"]) for row in rows
              if (row["cell"]["sec"], row["cell"]["net"]) == ("SEC3", "NET2")]
    assert sum(events) > 1 / 12  # a failed round's three clients count three times
    assert (f"failure events per round, mean over runs: highest SEC3/NET2 "
            f"{100 * sum(events) / len(events):.3g}%") in fail
    # the interaction contrast stays unpaired, and says so
    assert "unpaired: the four pooled samples are resampled independently" in head


def test_cell_ratios_are_the_gates_comparison(made: tuple[Path, Path, list[Cell], str]) -> None:
    """The cells table's p50 vs SEC0 is compare.ratio of the cell's and its SEC0 arm's rows
    with the cell's seed: the median gate's numbers to the last digit."""
    results, _, _, text = made
    rows = {r["cell"]["id"]: r for r in ResultStore(results).rows()}
    table = _section(text, "Cells")
    for cid in ("SEC3-NET0-iid-s0", "SEC3-NET2-noniid-s1"):
        row, base = rows[cid], rows[cid.replace("SEC3", "SEC0")]
        r50 = compare.ratio([(row, base)], 0.5, seed=row["cell"]["seed"])
        line = next(x for x in table.splitlines() if x.startswith(f"| `{cid}`"))
        assert f"{r50.estimate:.3f}x [{r50.ci_low:.3f}, {r50.ci_high:.3f}]" in line
        assert f"(MDE {r50.mde:.1%})" in line


def test_slo_verdicts_stored_in_rows_are_listed(made: tuple[Path, Path, list[Cell], str]) -> None:
    body = _section(made[3], "SLO verdicts")
    assert "`SEC3-NET0-iid-s0`" in body and "INCONCLUSIVE" in body
    assert "n = 1 verdicts in 1 of 16 cells" in body


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_real_pngs_linked_from_the_report(
        made: tuple[Path, Path, list[Cell], str], name: str) -> None:
    path = made[1].parent / name
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width >= 600 and height >= 400
    assert len(data) > 20_000  # drawn content, not an empty canvas
    assert f"]({name})" in made[3]


def test_main_report_prints_the_path(tmp_path: Path, made: tuple[Path, Path, list[Cell], str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    small = tmp_path / "res"
    build_results(small, matrix(net=("NET0",), data=("iid",), seeds=(0,)))
    assert main_report(str(small), None) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(small / "report" / "report.md")
    text = Path(out).read_text(encoding="utf-8")
    # A matrix without NET2: those claims are named as not testable, not invented.
    head = _section(text, "Seed study (ZeroTrust-FLBench) headline claims vs this run")
    for cid in ("sec3-p99-net2", "sec3-p50-net2", "net2-p99-sec0", "additive-sec3-net2",
                "net2-delays-convergence-5-rounds", "net2-50ms", "net2-20ms-rtt"):
        line = next(x for x in head.splitlines() if x.startswith(f"| `{cid}`"))
        assert "| not testable here: NET2 not in this run |" in line, line
    assert "| `sec3-p50-net0` (" in head


def test_importing_the_report_does_not_import_matplotlib() -> None:
    code = "import sys, pytest_ztfl.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_a_missed_calibration_qualifies_the_report_and_names_its_cells(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cells = build_results(results, matrix(data=("iid",), seeds=(0,)))
    (results / "calibration").mkdir()
    for net, ok in (("NET0", True), ("NET2", False)):
        figures = [{"name": "loss up", "passed": True}, {"name": "rtt p50", "passed": ok}]
        (results / "calibration" / f"{net}.json").write_text(json.dumps({"figures": figures}))
    (results / "calibration" / "NET0.2.json").write_text(json.dumps({"figures": []}))
    later = "SEC3-NET0-iid-s0"  # measured in a later sitting of a resumed run
    for path in (results / "cells").glob("*.json"):
        row = json.loads(path.read_text())
        net = row["cell"]["net"]
        ref = "calibration/NET0.2.json" if path.stem == later else f"calibration/{net}.json"
        row["overlays"]["net"]["calibration"] = {"ref": ref, "passed": net != "NET2"}
        path.write_text(json.dumps(row))
    text = write(results, tmp_path / "report").read_text(encoding="utf-8")
    n2 = sum(c.net == "NET2" for c in cells)
    assert n2 == 2
    assert ("> - `calibration/NET2.json`: calibration missed its targets (rtt p50); the 2 cells "
            "measured on it ran on a network other than specified") in text
    assert "NET0.json`: calibration missed" not in text
    meta = _section(text, "Run metadata")
    assert ("| NET calibration | NET0 passed (`calibration/NET0.json`, `calibration/NET0.2.json`)"
            "; NET2 MISSED its targets (`calibration/NET2.json`) |") in meta


def test_a_profile_calibrated_in_two_sittings_shows_both_round_trips(tmp_path: Path) -> None:
    """A resumed run calibrates each sitting again (pytest_ztfl.calibration): the NET2 claims
    quote every calibration's round trip, in sitting order, and the metadata names both."""
    results = tmp_path / "results"
    build_results(results, matrix(data=("iid",), seeds=(0,)))
    (results / "calibration").mkdir()
    for name, rtt in (("NET0.json", 0.1), ("NET2.json", 50.3), ("NET2.2.json", 49.8)):
        figures = [{"name": "rtt p50", "measured": rtt, "n": 300, "passed": True}]
        (results / "calibration" / name).write_text(json.dumps({"figures": figures}))
    for path in (results / "cells").glob("*.json"):
        row = json.loads(path.read_text())
        net = row["cell"]["net"]
        ref = "calibration/NET2.2.json" if path.stem == "SEC3-NET2-iid-s0" else \
            f"calibration/{net}.json"
        row["overlays"]["net"]["calibration"] = {"ref": ref, "passed": True}
        path.write_text(json.dumps(row))
    text = write(results, tmp_path / "report").read_text(encoding="utf-8")
    head = _section(text, "Seed study (ZeroTrust-FLBench) headline claims vs this run")
    line = next(x for x in head.splitlines() if x.startswith("| `net2-50ms`"))
    assert ("NET2 round trip p50 50.3 ms (`calibration/NET2.json`, n 300), 49.8 ms "
            "(`calibration/NET2.2.json`, n 300)") in line, line
    assert ("NET2 passed (`calibration/NET2.json`, `calibration/NET2.2.json`)"
            in _section(text, "Run metadata"))
