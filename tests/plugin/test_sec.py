"""The security levels' vocabulary: which controls each level has, and that a level is its
name wherever text is expected (rows, ids, matrix files)."""

from __future__ import annotations

import json

import pytest

from pytest_ztfl.matrix import Cell, Workload
from pytest_ztfl.sec import SEC_LEVELS, Sec


def test_each_level_knows_its_controls() -> None:
    assert [(s.netpol, s.mtls, s.baseline) for s in Sec] == [
        (False, False, True), (True, False, False), (False, True, False), (True, True, False)]
    assert SEC_LEVELS == ("SEC0", "SEC1", "SEC2", "SEC3")


def test_a_level_is_its_name_in_text_and_comparisons() -> None:
    assert Sec("SEC2") is Sec.SEC2 and Sec.SEC2 == "SEC2" and f"{Sec.SEC2}" == "SEC2"
    assert json.dumps({"sec": Sec.SEC3}) == '{"sec": "SEC3"}'
    assert {"SEC1": 1}[Sec.SEC1] == 1
    with pytest.raises(ValueError):
        Sec("SEC4")


@pytest.mark.parametrize("sec", SEC_LEVELS)
def test_a_cell_asks_its_level(sec: str) -> None:
    c = Cell(sec, "NET0", "iid", 0, Workload())
    assert (c.netpol, c.tls) == (Sec(sec).netpol, Sec(sec).mtls)
    assert not c.shaped and Cell(sec, "NET2", "iid", 0, Workload()).shaped
