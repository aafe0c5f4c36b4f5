"""The measurement design (pytest_ztfl.design) and the check arms of the matrix.

Pure logic: which cells form a block, that blocks, arms and rounds come in random but
recorded and reproducible orders, that no level of a factor is confounded with the run order,
and that fault blocks run one cell at a time.
"""

from __future__ import annotations

from collections import Counter

import pytest

from pytest_ztfl import design
from pytest_ztfl import matrix as mx

QUICK = mx.load("quick")


def test_a_block_holds_the_arms_that_differ_only_in_sec_mode_and_check() -> None:
    m = mx.override(QUICK, checks="aa,delay10ms")
    d = design.plan(m.cells(), "round", 1)
    assert len(d.blocks) == 4  # NET0/NET2 x iid/dirichlet, one seed
    for b in d.blocks:
        assert len({(c.net, c.data, c.seed, c.fault) for c in b.arms}) == 1
        assert sorted(c.sec for c in b.arms if c.check is None) == ["SEC0", "SEC1", "SEC2", "SEC3"]
        assert sorted(c.check for c in b.arms if c.check) == ["aa", "delay10ms"]
        assert b.mode == "round" and b.why == ""
    assert sorted(c.id for c in d.cells()) == sorted(c.id for c in m.cells())


def test_orders_are_random_recorded_and_reproducible() -> None:
    cells = mx.override(mx.load("paper"), checks="aa").cells()
    a, b = design.plan(cells, "round", 7), design.plan(cells, "round", 7)
    assert a == b and a.to_dict() == b.to_dict()
    c = design.plan(cells, "round", 8)
    assert [x.key for x in a.blocks] != [x.key for x in c.blocks]
    # a block's rounds: a fresh permutation of its arms each round
    block = a.blocks[0]
    orders = [tuple(x.id for x in block.round_order(r)) for r in range(1, 51)]
    assert all(sorted(o) == sorted(x.id for x in block.arms) for o in orders)
    assert len(set(orders)) > 20
    assert block.round_order(3) == block.round_order(3)
    row = block.to_dict(block.arms[2])
    assert row["position"] == 2 and row["order_seed"] == 7 and row["block"] == block.key


def test_no_level_is_confounded_with_the_run_order() -> None:
    """Over the paper matrix's 20 blocks, neither NET comes mostly first; within blocks over
    many rounds, every arm goes first about equally often (one seed, so no flakiness)."""
    d = design.plan(mx.load("paper").cells(), "round", 20261205)
    first_half = Counter(b.arms[0].net for b in d.blocks[:10])
    assert first_half["NET0"] < 10 and first_half["NET2"] < 10
    block = d.blocks[0]
    firsts = Counter(block.round_order(r)[0].sec for r in range(1, 401))
    assert set(firsts) == {"SEC0", "SEC1", "SEC2", "SEC3"}
    assert all(60 < n < 140 for n in firsts.values()), firsts


def test_fault_blocks_run_one_cell_at_a_time() -> None:
    m = mx.override(mx.load("smoke"), faults="none,client-kill")
    d = design.plan(m.cells(), "round", 1)
    modes = {b.key: b.mode for b in d.blocks}
    assert modes["NET0-iid-s0"] == "round"
    assert modes["NET0-iid-s0-client-kill"] == "cell"
    faulty = next(b for b in d.blocks if b.key == "NET0-iid-s0-client-kill")
    assert "straddle" in faulty.why and "why" in faulty.to_dict()


def test_cell_mode_is_asked_for() -> None:
    d = design.plan(QUICK.cells(), "cell", 1)
    assert {b.mode for b in d.blocks} == {"cell"}
    with pytest.raises(ValueError, match="design mode 'pairs'"):
        design.plan(QUICK.cells(), "pairs", 1)


def test_check_arms_ids_baselines_and_effects() -> None:
    m = mx.override(mx.load("smoke"), checks="aa,delay12.5ms")
    cells = {c.id: c for c in m.cells()}
    aa, delay = cells["SEC0-NET2-iid-s0-aa"], cells["SEC0-NET2-iid-s0-delay12.5ms"]
    assert aa.block == delay.block == "NET2-iid-s0"
    base = aa.baseline(m.cells())
    assert base is not None and base.id == "SEC0-NET2-iid-s0" and base.check is None
    assert delay.inject_delay_ms == 12.5 and aa.inject_delay_ms == 0.0
    assert cells["SEC0-NET2-iid-s0"].baseline(m.cells()) is None
    sec3 = cells["SEC3-NET2-iid-s0"].baseline(m.cells())
    assert sec3 is not None and sec3.id == "SEC0-NET2-iid-s0"  # never a check arm
    assert mx.from_dict(m.to_dict(), "round trip").checks == ("aa", "delay12.5ms")


@pytest.mark.parametrize("bad", ["ab", "delay0ms", "delay-5ms", "delayms", "delay5", "AA"])
def test_a_bad_check_names_its_field(bad: str) -> None:
    raw = {**mx.PRESETS["smoke"], "name": "x", "checks": [bad]}
    with pytest.raises(mx.MatrixError) as info:
        mx.from_dict(raw, "matrix x.yaml")
    assert str(info.value) == (
        f"matrix x.yaml: checks[0]={bad!r}: expected 'aa' or 'delay<MS>ms' (e.g. delay10ms)"
    )


def test_checks_none_on_the_command_line_removes_them() -> None:
    m = mx.override(mx.override(QUICK, checks="aa"), checks="none")
    assert m.checks == () and all(c.check is None for c in m.cells())


def test_after_gives_the_next_block_in_run_order() -> None:
    """The session starts the next block's calibration when a block's rounds end."""
    d = design.plan(QUICK.cells(), "round", 3)
    nexts = [d.after(b) for b in d.blocks]
    assert nexts == [*d.blocks[1:], None]
