"""The seed study's claims as data (pytest_ztfl/report/study_claims.toml, read by
report.study): the shipped file loads and holds what the report holds runs against; a malformed
entry is one error line naming the claim's id and the field."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from report_synth import build_results, matrix

from pytest_ztfl.report import claims, main_report, study
from pytest_ztfl.report.study import Claimed, ClaimsError, load_claims, parse_claims

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_claims_load_with_their_quantities() -> None:
    claims = {c.id: c for c in load_claims()}
    assert len(claims) >= 20
    for kind in ("ratio", "ordering", "interaction", "share", "difference", "count", "setting"):
        assert any(c.kind == kind for c in claims.values()), kind
    fig2, fig5 = claims["sec3-p99-net0"], claims["sec3-p99-net0-fig5"]
    assert (fig2.q, fig2.treatment.sec, fig2.treatment.net, fig2.baseline.sec) == (
        0.99, "SEC3", "NET0", "SEC0")
    assert fig2.claimed == Claimed(1.415, 1.415) and fig5.claimed == Claimed(1.327, 1.327)
    assert fig2.contradicts == ("sec3-p99-net0-fig5",) and fig5.contradicts == ("sec3-p99-net0",)
    assert (fig2.definition, fig5.definition) == ("mean-of-runs", "pooled")
    assert claims["sec1-p99-net0"].claimed == Claimed(1.15, 1.28)
    assert claims["failure-every-config-le-2pct"].claimed == Claimed(-math.inf, 0.02)
    assert "failure-every-config-le-2pct" in claims["failure-sec3-net2-5.8pct"].contradicts
    assert claims["noniid-higher-than-iid"].claimed == Claimed(1.0, math.inf, open_low=True)
    assert claims["net2-50ms"].contradicts == ("net2-20ms-rtt",)
    assert claims["completion-100pct"].contradicts == ("attempts-158",)
    # every contradiction is named on both sides
    for c in claims.values():
        for other in c.contradicts:
            assert c.id in claims[other].contradicts


def test_an_installed_package_carries_the_claims_file() -> None:
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    data = conf["tool"]["setuptools"]["package-data"]["pytest_ztfl.report"]
    assert study.CLAIMS_FILE in data
    assert (REPO / "pytest_ztfl" / "report" / study.CLAIMS_FILE).is_file()


@pytest.mark.parametrize(
    ("claimed", "interval", "meets"),
    [
        (Claimed(1.415, 1.415), (1.40, 1.43), True),
        (Claimed(1.327, 1.327), (1.40, 1.43), False),
        (Claimed(1.15, 1.28), (1.25, 1.40), True),  # a range meets an overlapping interval
        (Claimed(1.15, 1.28), (1.01, 1.10), False),
        (Claimed(-math.inf, 0.02), (0.0, 0.09), True),  # "<= 2%": the interval reaches below
        (Claimed(-math.inf, 0.02), (0.033, 0.083), False),
        (Claimed(1.0, math.inf, open_low=True), (0.9, 1.0), False),  # "above 1": 1 is not
        (Claimed(1.0, math.inf, open_low=True), (0.9, 1.01), True),
    ],
)
def test_a_claim_meets_an_interval_that_holds_a_value_it_admits(
    claimed: Claimed, interval: tuple[float, float], meets: bool
) -> None:
    assert claimed.meets(*interval) is meets


GOOD: dict[str, Any] = {
    "id": "x-ratio",
    "statement": "SEC3 costs 41.5%",
    "where": "Fig. 2",
    "kind": "ratio",
    "metric": "duration",
    "q": 0.99,
    "treatment": {"sec": "SEC3", "net": "NET0"},
    "baseline": {"sec": "SEC0", "net": "NET0"},
    "definition": "mean-of-runs",
    "shown": "+41.5%",
    "value": 1.415,
}
OTHER: dict[str, Any] = {
    "id": "y-count", "statement": "158 attempts", "where": "Table I", "kind": "count",
    "metric": "experiments", "shown": "158", "value": 158,
}


def _with(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize(
    ("claim", "field"),
    [
        pytest.param(_with(statement=None), "statement", id="missing"),
        pytest.param(_with(where=""), "where", id="empty"),
        pytest.param(_with(kind="anecdote"), "kind", id="kind"),
        pytest.param(_with(metric="tta"), "metric", id="metric-of-kind"),
        pytest.param(_with(q=1.5), "q", id="q-range"),
        pytest.param(_with(q="p99"), "q", id="q-type"),
        pytest.param(_with(baseline=None), "baseline", id="needed-by-kind"),
        pytest.param(_with(treatment={"sec": "SEC9", "net": "NET0"}), "treatment.sec",
                     id="side-sec"),
        pytest.param(_with(treatment={"zone": "eu"}), "treatment.zone", id="side-key"),
        pytest.param(_with(definition="median"), "definition", id="definition"),
        pytest.param(_with(range=[1.1, 1.2]), "range", id="two-sets"),
        pytest.param(_with(value=None), "value", id="no-set"),
        pytest.param(_with(value=None, range=[1.3, 1.2]), "range", id="range-order"),
        pytest.param(_with(value=math.nan), "value", id="nan"),
        pytest.param(_with(valu=1.4), "valu", id="unknown-field"),
        pytest.param(_with(needs_rounds=0), "needs_rounds", id="needs-rounds"),
        pytest.param(_with(contradicts=["nope"]), "contradicts", id="contradicts-unknown"),
        pytest.param(_with(kind="ordering", value=None, above=None, range=[1.0, 2.0]), "above",
                     id="ordering-set"),
    ],
)
def test_a_malformed_claim_is_one_error_naming_its_id_and_field(
    claim: dict[str, Any], field: str
) -> None:
    with pytest.raises(ClaimsError) as info:
        parse_claims({"claim": [claim, OTHER]})
    message = str(info.value)
    assert "\n" not in message
    assert f"claim 'x-ratio': field '{field}'" in message, message


def test_a_contradiction_must_be_named_on_both_sides() -> None:
    with pytest.raises(ClaimsError, match="claim 'y-count': field 'contradicts' must name "
                                          "'x-ratio' too"):
        parse_claims({"claim": [_with(contradicts=["y-count"]), OTHER]})
    both = parse_claims({"claim": [_with(contradicts=["y-count"]),
                                   {**OTHER, "contradicts": ["x-ratio"]}]})
    assert [c.contradicts for c in both] == [("y-count",), ("x-ratio",)]


def test_ids_are_unique_and_a_file_has_claims(tmp_path: Path) -> None:
    with pytest.raises(ClaimsError, match="claim 'x-ratio': field 'id' is used by two claims"):
        parse_claims({"claim": [GOOD, GOOD]})
    with pytest.raises(ClaimsError, match="no \\[\\[claim\\]\\] entries"):
        parse_claims({})
    bad = tmp_path / "claims.toml"
    bad.write_text("[[claim]\nid = ")
    with pytest.raises(ClaimsError, match=r"claims\.toml: not TOML"):
        load_claims(bad)
    good = tmp_path / "good.toml"
    good.write_text('[[claim]]\nid = "c"\nstatement = "s"\nwhere = "w"\nkind = "count"\n'
                    'metric = "experiments"\nshown = "80"\nvalue = 80\n')
    assert [c.id for c in load_claims(good)] == ["c"]


def test_a_tta_ordering_claims_its_fastest_level_and_no_values() -> None:
    tta = {"id": "t", "statement": "SEC0 fastest", "where": "Fig. 2", "kind": "ordering",
           "metric": "tta", "fastest": "SEC0", "needs_target": 0.95, "shown": "SEC0 first"}
    (c,) = parse_claims({"claim": [tta]})
    assert (c.fastest, c.needs_target) == ("SEC0", 0.95) and c.claimed.meets(-1e9, 1e9)
    with pytest.raises(ClaimsError, match="claim 't': field 'value' has no place"):
        parse_claims({"claim": [{**tta, "value": 1.0}]})
    with pytest.raises(ClaimsError, match="claim 't': field 'fastest' must be one of SEC0"):
        parse_claims({"claim": [{**tta, "fastest": "fast"}]})


def test_ztfl_report_names_a_malformed_claim_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_results(tmp_path / "res", matrix(net=("NET0",), data=("iid",), seeds=(0,)))
    monkeypatch.setattr(claims, "load_claims", lambda: parse_claims({"claim": [_with(q=2)]}))
    assert main_report(str(tmp_path / "res"), str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err == ("ztfl report: error: study_claims.toml: claim 'x-ratio': field 'q' must be a "
                   "quantile in (0, 1), not 2\n")
