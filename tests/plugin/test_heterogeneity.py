"""Client heterogeneity as a matrix axis (``heterogeneity:``), without a cluster: its parsing
(every bad field one error naming it), the seeded draw (same seed, same clients; shares kept;
a round never left below its minimum of participants), the cell ids and blocks it makes, and
what a cell renders from it (each client's CPU limit and NET annotation, the server's
availability trace)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_fixtures import workload
from k8s_fixtures.netem.profiles import NET_ANNOTATION, load_profiles
from k8s_fixtures.tls.ca import CertificateAuthority
from pytest_ztfl import preflight, slo
from pytest_ztfl.backends import Platform
from pytest_ztfl.cellplan import fl_run
from pytest_ztfl.matrix import MatrixError, from_dict, load
from pytest_ztfl.matrix.hetero import DeviceClass, Heterogeneity
from pytest_ztfl.session import ZtflSession

NETS = ("NET0", "NET1", "NET2")


def _matrix(het: Any) -> dict[str, Any]:
    return {
        "name": "h",
        "sec": ["SEC0", "SEC3"],
        "net": ["NET0"],
        "data": ["iid"],
        "seeds": [0],
        "workload": {"clients": 4, "rounds": 6},
        "heterogeneity": het,
    }


def _two(**slow: Any) -> dict[str, Any]:
    return {
        "name": "two",
        "classes": [
            {"name": "fast", "share": 0.5},
            {"name": "slow", "share": 0.5, "net": "NET1", "cpu": "250m", "availability": 0.5,
             **slow},
        ],
    }


@pytest.mark.parametrize(
    ("het", "message"),
    [
        (_two(cpu="fast"), "heterogeneity.classes[1].cpu='fast': not a CPU quantity"),
        (_two(cpu=0), "heterogeneity.classes[1].cpu=0: below 1m"),
        (_two(net="NET9"), "heterogeneity.classes[1].net='NET9': no such network profile"),
        (_two(availability=0), "heterogeneity.classes[1].availability=0: must be in (0, 1]"),
        (_two(availability="often"),
         "heterogeneity.classes[1].availability='often': expected a number"),
        (_two(share=0.7), "heterogeneity.classes: shares sum to 1.2, not 1"),
        (_two(speed=2), "unknown field 'heterogeneity.classes[1].speed'"),
        (_two(name="Slow Ones"), "heterogeneity.classes[1].name='Slow Ones': expected a name"),
        ({"name": "x", "classes": []}, "field 'heterogeneity.classes' must be a non-empty list"),
        ({"classes": [{"name": "a", "share": 1}]}, "heterogeneity.name=None: expected a name"),
        (["none", _two(), _two()], "field 'heterogeneity' names a distribution twice"),
        (["none", _two(share="half")], "heterogeneity[1].classes[1].share='half'"),
    ],
)
def test_a_bad_field_is_one_error_naming_it(het: Any, message: str) -> None:
    with pytest.raises(MatrixError) as info:
        from_dict(_matrix(het), "matrix m.yaml", NETS)
    text = str(info.value)
    assert text.startswith("matrix m.yaml: ") and "\n" not in text
    assert message in text, text


def test_the_axis_crosses_cells_and_names_them() -> None:
    m = from_dict(_matrix(["none", _two()]), "m", NETS)
    ids = [c.id for c in m.cells()]
    assert ids == ["SEC0-NET0-iid-s0", "SEC0-NET0-iid-s0-htwo",
                   "SEC3-NET0-iid-s0", "SEC3-NET0-iid-s0-htwo"]
    het = [c for c in m.cells() if c.hetero]
    # the arms of one distribution form a block and are compared with each other only
    assert {c.block for c in het} == {"NET0-iid-s0-htwo"}
    assert het[1].baseline(m.cells()) == het[0]
    # the stored matrix reads back as the same matrix
    assert from_dict(m.to_dict(), "stored", NETS) == m
    assert het[0].to_dict()["heterogeneity"]["classes"][1]["cpu"] == "250m"
    assert "heterogeneity" not in m.cells()[0].to_dict()


def test_the_draw_repeats_keeps_shares_and_the_round_minimum() -> None:
    h = Heterogeneity("d", (DeviceClass("a", 0.25), DeviceClass("b", 0.75, availability=0.3)))
    first = h.draw(8, 50, seed=3, min_present=5)
    assert first == h.draw(8, 50, seed=3, min_present=5)
    assert first != h.draw(8, 50, seed=4, min_present=5)
    assert sorted(d.device_class for d in first).count("a") == 2
    assert all(d.absent == () for d in first if d.device_class == "a")
    for r in range(1, 51):
        assert sum(r in d.absent for d in first) <= 8 - 5, r
    away = sum(len(d.absent) for d in first if d.device_class == "b")
    assert away > 50  # availability 0.3 takes b-clients out of rounds, up to the minimum
    assert h.counts(3) == [1, 2] and h.counts(1) == [0, 1]


def test_a_cell_renders_its_clients_limits_profiles_and_absences() -> None:
    cell = load("hetero-smoke", NETS).cells()[1]
    assert cell.id == "SEC3-NET0-iid-s0-htwo-class"
    draws = cell.clients()
    run = fl_run(cell, Platform(("python",), "/data"))
    flags = dict(zip(run.server_flags[::2], run.server_flags[1::2], strict=False))
    trace = {(int(r), int(c)) for r, c in (p.split(":") for p in flags["--absent"].split(","))}
    assert trace == {(r, d.client) for d in draws for r in d.absent} != set()
    pods = {o["metadata"]["name"]: o for o in workload.render(run, CertificateAuthority.create())
            if o["kind"] == "Pod"}
    for d in draws:
        pod = pods[f"fl-client-{d.client}"]
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits["cpu"] == d.cpu
        annotation = pod["metadata"].get("annotations", {}).get(NET_ANNOTATION)
        assert annotation == ("NET1" if d.device_class == "slow" else None)
    # without heterogeneity nothing of it is rendered
    plain = fl_run(replace(cell, hetero=None), Platform(("python",), "/data"))
    assert "--absent" not in plain.server_flags and not plain.overrides


def test_a_class_profile_that_cannot_fit_a_round_is_warned_like_a_cells() -> None:
    """The round-budget check before anything runs covers each device class's NET profile,
    not only the cell's: a class on NET4 with the paper model and a 1 s deadline."""
    raw = _matrix(_two(net="NET4"))
    raw["workload"] = {"clients": 4, "rounds": 2, "model": "paper", "round_deadline": 1}
    cells = from_dict(raw, "m", ("NET0", "NET4")).cells()
    lines = preflight.round_budget_warnings(cells, load_profiles())
    assert len(lines) == 1 and lines[0].startswith("profile NET4"), lines
    assert lines[0].endswith("2 cell(s) with model paper will miss it in every round")


def test_pooled_comparisons_and_benchmark_groups_keep_distributions_apart() -> None:
    """SEC3's cost over SEC0 pooled over blocks is pooled per heterogeneity distribution (and
    alike clients apart): their rounds are of different runs' kinds."""
    cells = {c.id: c for c in from_dict(_matrix(["none", _two()]), "m", NETS).cells()}
    assert slo.group_key(cells["SEC3-NET0-iid-s0"]) == "SEC3-NET0"
    assert slo.group_key(cells["SEC3-NET0-iid-s0-htwo"]) == "SEC3-NET0-htwo"
    assert ZtflSession.group_of(cells["SEC3-NET0-iid-s0-htwo"]) == "NET0-iid-htwo"
    assert ZtflSession.group_of(cells["SEC3-NET0-iid-s0"]) == "NET0-iid"


TRACE_CSV = """\
# a device and availability trace: each client's class and the rounds it sits out
client,class,absent
0,slow,1 3
1,fast,
2,fast,
3,slow,6
"""


def _traced(tmp_path: Path, csv_text: str, **workload: Any) -> Path:
    (tmp_path / "traces").mkdir(exist_ok=True)
    (tmp_path / "traces" / "t.csv").write_text(csv_text)
    raw = _matrix({"name": "traced", "trace": "traces/t.csv", "classes": [
        {"name": "fast", "cpu": "1"}, {"name": "slow", "net": "NET1", "cpu": "250m"}]})
    raw["workload"].update(workload)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_trace_file_gives_each_client_its_class_and_absences(tmp_path: Path) -> None:
    m = load(str(_traced(tmp_path, TRACE_CSV)), NETS)
    cell = m.cells()[0]
    assert cell.id == "SEC0-NET0-iid-s0-htraced"
    got = [(d.client, d.device_class, d.net, d.cpu, d.absent) for d in cell.clients()]
    assert got == [(0, "slow", "NET1", "250m", (1, 3)), (1, "fast", None, "1", ()),
                   (2, "fast", None, "1", ()), (3, "slow", "NET1", "250m", (6,))]
    flags = fl_run(cell, Platform(("python",), "/data")).server_flags
    assert flags[flags.index("--absent") + 1] == "1:0,3:0,6:3"
    # stored inline, the matrix reads back without the file
    (tmp_path / "traces" / "t.csv").unlink()
    assert from_dict(m.to_dict(), "matrix.json", NETS) == m


@pytest.mark.parametrize(
    ("csv_text", "workload", "message"),
    [
        (TRACE_CSV.replace("client,class,absent", "id,class,absent"), {},
         "heterogeneity.trace='traces/t.csv': header 'id,class,absent', expected "
         "'client,class,absent'"),
        (TRACE_CSV.replace("3,slow,6", "3,medium,6"), {},
         "heterogeneity.trace[3].class='medium': no such class (known: fast, slow)"),
        (TRACE_CSV.replace("1,fast,", "1,fast,x"), {},
         "heterogeneity.trace[1].absent='x': expected round numbers >= 1"),
        (TRACE_CSV.replace("2,fast,", "5,fast,"), {},
         "heterogeneity.trace: client ids must be 0..n-1, 2 is missing"),
        (TRACE_CSV, {"clients": 5},
         "heterogeneity traced: trace names 4 clients, the workload has 5"),
        (TRACE_CSV, {"rounds": 5},
         "heterogeneity traced: trace: client 3 absent from round 6, the workload has 5 rounds"),
        (TRACE_CSV.replace("2,fast,", "2,fast,1"), {},
         "heterogeneity traced: trace: round 1 keeps 2 of 4 clients, fewer than "
         "min_participants 3"),
    ],
)
def test_a_bad_trace_is_one_error_naming_it(
    tmp_path: Path, csv_text: str, workload: dict[str, Any], message: str
) -> None:
    path = _traced(tmp_path, csv_text, **workload)
    with pytest.raises(MatrixError) as info:
        load(str(path), NETS)
    assert str(info.value) == f"matrix {path}: {message}"
