"""The report's figures: each drawn when it has something to show, else replaced by its one
line in report.md (and an earlier report's file of that name removed); the numbers the heatmaps
print are the tables'; accuracy curves that coincide share one line and say so; the ECDF marks
each NET's SEC0 p99 as the tables give it."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from report_synth import build_results, matrix

from pytest_ztfl.matrix import Workload
from pytest_ztfl.matrix.hetero import DeviceClass, Heterogeneity
from pytest_ztfl.report import load, write
from pytest_ztfl.report.calc import Analysis, analyse
from pytest_ztfl.report.figures import FIGURES
from pytest_ztfl.report.figures.curves import coinciding, convergence, sec0_p99
from pytest_ztfl.report.figures.grids import overhead_tile, p99_tile, rate_tile, tta_tile
from pytest_ztfl.report.fmt import ci_text, num, ratio_text

ALL = ("overhead_heatmap.png", "p99_heatmap.png", "round_duration_ecdf.png", "tta.png",
       "failure_rate_heatmap.png", "success_counts.png", "failures_by_class.png",
       "convergence.png")
PNG = b"\x89PNG\r\n\x1a\n"
FAULTY = "SEC3-NET2-noniid-s1"
Made = tuple[Path, str, Analysis]
HETERO = "round_vs_slowest_class.png"
HETERO_LINE = ("*Round duration against the slowest participating class*: no figure, no cell "
               "of these 16 had heterogeneous clients (matrix key `heterogeneity`).")


def _make(root: Path, **kw: Any) -> Made:
    results = root / "results"
    build_results(results, **kw)
    path = write(results, root / "report")
    return path.parent, path.read_text(encoding="utf-8"), analyse(load.load(results))


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _group_row(text: str, sec: str, net: str, data: str) -> str:
    body = _section(text, "Cell groups (pooled over seeds)")
    return next(x for x in body.splitlines() if x.startswith(f"| {sec} | {net} | {data} |"))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """One cell with a failed round and a timed-out update: every figure has something."""
    return _make(tmp_path_factory.mktemp("faulty"),
                 faults={FAULTY: {"fail_rounds": frozenset({5}), "timeouts": 1}})


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """No failure, every cell successful, no run at its 99% target; an earlier report's file
    of every figure's name waits in the report directory."""
    root = tmp_path_factory.mktemp("clean")
    (root / "report").mkdir()
    for name in ALL:
        (root / "report" / name).write_bytes(b"an earlier report's figure")
    wl = Workload(clients=4, rounds=12, eval_every=3, target_accuracy=0.99)
    return _make(root, m=matrix(workload=wl))


def test_the_figures_are_the_registered_ones_in_order() -> None:
    assert [f.__name__ for f in FIGURES] == ["overhead", "p99", "ecdf", "tta", "failure_rates",
                                             "success", "failures", "convergence", "hetero"]


@pytest.mark.parametrize("name", ALL)
def test_a_figure_with_something_to_show_is_drawn_and_shown(faulty: Made, name: str) -> None:
    report, text, _ = faulty
    data = (report / name).read_bytes()
    assert data[:8] == PNG
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width >= 600 and height >= 400
    assert len(data) > 20_000  # drawn content, not an empty canvas
    assert f"]({name})" in _section(text, "Figures")


def test_the_figures_follow_the_summary_in_their_order(faulty: Made) -> None:
    text = faulty[1]
    figures = _section(text, "Figures")
    assert text.index("## Summary") < text.index("## Figures") < text.index("## Run metadata")
    # every figure drawn but the heterogeneity one (no cell here had heterogeneous clients)
    assert [x for x in figures.splitlines() if "no figure" in x] == [HETERO_LINE]
    places = [figures.index(f"]({name})") for name in ALL]
    assert places == sorted(places)


def test_a_figure_with_nothing_to_show_is_one_line_and_no_file(clean: Made) -> None:
    report, text, a = clean
    rounds = sum(len(c.run.rounds) for c in a.cells)
    assert (rounds, len(a.cells)) == (192, 16)
    upper = 100 * (1 - 0.025 ** (1 / rounds))  # Clopper-Pearson's upper bound for 0 of n
    lines = {
        "failure_rate_heatmap.png": "*Per-round failure rate*: no figure, no round failed: 0 of "
        f"192 planned rounds in 16 cells (95% Clopper-Pearson upper bound {upper:.3g}%).",
        "success_counts.png": "*Cells successful*: no figure, every cell succeeded: 16 of 16 "
        "(4 per SEC x NET).",
        "failures_by_class.png": "*Failure events by class*: no figure, no failure event of "
        "any class in 192 planned rounds of 16 cells.",
        "tta.png": "*Time to target accuracy*: no figure, no run reached 99% accuracy within "
        "its rounds: every time to target is censored (*Cell groups* gives the lower bounds).",
        HETERO: HETERO_LINE,
    }
    figures = _section(text, "Figures")
    for name, line in lines.items():
        assert line in figures.splitlines(), name
        assert f"]({name})" not in text
        assert not (report / name).exists(), name  # the earlier report's file is gone
    for name in set(ALL) - set(lines):
        assert (report / name).read_bytes()[:8] == PNG, name  # redrawn over the old file
        assert f"]({name})" in figures


def test_with_sec0_alone_there_is_no_overhead_to_draw(tmp_path: Path) -> None:
    report, text, _ = _make(tmp_path, m=matrix(sec=("SEC0",), net=("NET0",), data=("iid",),
                                               seeds=(0,)))
    assert ("*Overhead of each SEC level over SEC0*: no figure, only SEC0 was measured: there "
            "is no overhead to show.") in text
    assert not (report / "overhead_heatmap.png").exists()
    assert (report / "p99_heatmap.png").read_bytes()[:8] == PNG


def test_the_overhead_heatmap_prints_the_cell_groups_ratios(faulty: Made) -> None:
    _, text, a = faulty
    compared = [g for g in a.groups.values() if g.key[0] != "SEC0"]
    assert len(compared) == 4
    for g in compared:
        r = g.ratios[0]
        tile = overhead_tile(g)
        assert tile.value == r.estimate
        shown = " ".join(tile.text.splitlines()[:2])
        assert shown == ratio_text(r, mde=False)
        assert shown in _group_row(text, *g.key)
        assert f"{r.blocks} blocks" in tile.text


def test_the_other_heatmaps_print_the_cell_groups_numbers(faulty: Made) -> None:
    _, text, a = faulty
    for g in a.groups.values():
        row = _group_row(text, *g.key)
        assert g.summary is not None and g.tta is not None
        q = g.summary.get(0.99)
        p99 = p99_tile(g)
        assert p99.value == q.estimate
        assert f"{num(q.estimate)} {ci_text(q.ci_low, q.ci_high)}" in row
        assert p99.text.startswith(f"{num(q.estimate)} s")
        t = g.tta
        tta = tta_tile(g)
        if math.isfinite(t.estimate):
            assert tta.value == t.estimate
            assert f"{num(t.estimate)} {ci_text(t.ci_low, t.ci_high)}" in row
        else:
            assert math.isnan(tta.value) and tta.text.startswith("not reached")
            assert "not reached" in row
        rate = rate_tile(g)
        assert rate.text.startswith(f"{g.failed_rounds}/{g.rounds_total} rounds")
        assert f"| {g.failed_rounds}/{g.rounds_total} |" in row
    faulty_group = a.groups["SEC3", "NET2", "dirichlet-0.5"]
    assert rate_tile(faulty_group).value == pytest.approx(100 / 24)  # 1 of 2 x 12 rounds


def _same_accuracy(results: Path) -> None:
    """Every row's accuracy by round made the same, as one seed's model is at every SEC level."""
    for path in (results / "cells").glob("*.json"):
        row = json.loads(path.read_text())
        row["metrics"]["accuracy_by_round"] = {"3": 0.61, "6": 0.83, "9": 0.9, "12": 0.93}
        path.write_text(json.dumps(row))


def test_accuracy_curves_that_coincide_share_one_line_and_say_so(tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(data=("iid",), seeds=(0,)))
    apart = analyse(load.load(results))
    assert coinciding(apart, "NET0", "iid") == [["SEC0"], ["SEC3"]]
    plain = convergence(apart, tmp_path)
    assert plain.drawn and "identical" not in plain.text

    _same_accuracy(results)
    a = analyse(load.load(results))
    for net in ("NET0", "NET2"):
        assert coinciding(a, net, "iid") == [["SEC0", "SEC3"]]
    fig = convergence(a, tmp_path)
    assert fig.drawn and (tmp_path / fig.name).read_bytes()[:8] == PNG
    assert "In every panel the SEC levels' curves are identical" in fig.text
    assert "one line stands for all of them" in fig.text


def test_the_ecdf_marks_each_nets_sec0_p99_as_the_tables_give_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    build_results(results, matrix(data=("iid",), seeds=(0,)))
    a = analyse(load.load(results))
    for net in a.nets:
        summary = a.groups["SEC0", net, "iid"].summary
        assert summary is not None
        assert sec0_p99(a, net) == summary.get(0.99).estimate
    assert sec0_p99(a, "NET4") is None


def test_heterogeneous_cells_draw_round_duration_by_slowest_class(tmp_path: Path) -> None:
    """A matrix with heterogeneity: its rows record each round's slowest participant and
    class (pytest_ztfl.hetero_row, from the event log), and the figure shows them with the
    per-class medians of those rows in its caption."""
    het = Heterogeneity("two", (DeviceClass("fast", 0.5), DeviceClass("slow", 0.5, cpu="250m")))
    report, text, a = _make(tmp_path, m=matrix(net=("NET0",), data=("iid",), seeds=(0,),
                                               hetero=(het,)))
    assert [c.run.id for c in a.cells] == ["SEC0-NET0-iid-s0-htwo", "SEC3-NET0-iid-s0-htwo"]
    figures = _section(text, "Figures")
    assert f"]({HETERO})" in figures
    assert (report / HETERO).read_bytes()[:8] == PNG
    rounds = [rd for c in a.cells for rd in c.run.heterogeneity["rounds"]]
    assert len(rounds) == 24
    for cls in ("fast", "slow"):
        d = [rd["duration"] for rd in rounds if rd["slowest_class"] == cls]
        expect = f"median {median(d):.3f} s over {len(d)} rounds" if d else "never the slowest"
        assert f"two/{cls}: {expect}" in figures, figures
