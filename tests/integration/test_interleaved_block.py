"""A block with its rounds interleaved, on the real local backend (CI's small version of the
instrument check in benchmarks/trust.yaml): the SEC0 arm, the same arm again (A/A) and the
SEC0 arm with a known 200 ms inside every round, run by ``runner.run_block``.

Checked from the servers' own event logs and the rows: no two rounds of the block ever ran
at once, every round ran in the recorded order, held time is not run time, each round's CPU
was charged to it from the cgroups, the known delay is found where it was put (the round's
communication part, and the whole round), and the A/A stays near 1. The delay is large
against these short rounds on purpose: a check that could flake is no check (100 ms, a fifth
of a round, went unseen in the whole round's 6-round interval three times here while other
tests loaded the 2 cores to a load average of 10-18).
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from integration_support import Live

from fl_app.events import parse_events
from fl_app.summary import summarize
from pytest_ztfl import design, runner
from pytest_ztfl.analysis import compare
from pytest_ztfl.matrix import Cell, Workload

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

ROUNDS = 6
DELAY_MS = 200.0
WORKLOAD = Workload(clients=3, rounds=ROUNDS, max_steps=25, eval_every=3, min_participants=2)


def _block(live: Live) -> list[tuple[dict[str, Any], bytes]]:
    if "block" not in live.memo:
        cells = [
            Cell("SEC0", "NET0", "iid", 0, WORKLOAD),
            Cell("SEC0", "NET0", "iid", 0, WORKLOAD, check="aa"),
            Cell("SEC0", "NET0", "iid", 0, WORKLOAD, check=f"delay{DELAY_MS:g}ms"),
        ]
        (block,) = design.plan(cells, "round", 20261205).blocks
        hooks: dict[str, float] = {}
        live.memo["hooks"] = hooks
        live.memo["block"] = (block, runner.run_block(
            live.backend, block, print,
            before_rounds=lambda: hooks.setdefault("before", time.time()),
            after_rounds=lambda: hooks.setdefault("after", time.time())))
    out: list[tuple[dict[str, Any], bytes]] = live.memo["block"][1]
    return out


def _rows(live: Live) -> dict[str, dict[str, Any]]:
    return {row["cell"]["id"]: row for row, _ in _block(live)}


def test_rounds_never_overlap_and_follow_the_recorded_order(live: Live) -> None:
    results = _block(live)
    spans = []  # (start wall, end wall, cell id, round)
    for row, raw in results:
        assert row["error"] is None, row["error"]
        log = parse_events(raw.decode().splitlines(), row["cell"]["id"])
        starts = {e["round"]: e["wall"] for e in log.of("round_start")}
        ends = {e["round"]: e["wall"] for e in log.of("round_end")}
        assert sorted(starts) == list(range(1, ROUNDS + 1))
        spans += [(starts[r], ends[r], row["cell"]["id"], r) for r in starts]
        # time held between rounds is not the run's own (TTA, censoring)
        assert summarize(log).held_seconds > 0
    spans.sort()
    for (_, end, a, ra), (start, _, b, rb) in itertools.pairwise(spans):
        assert end <= start, f"{a} round {ra} and {b} round {rb} overlapped"
    ran = [[cid for _, _, cid, r in spans if r == k] for k in range(1, ROUNDS + 1)]
    block = live.memo["block"][0]
    for row, _ in results:
        d = row["design"]
        assert d["round_order"] == ran, "the recorded order is not the order rounds ran in"
        assert d["block_run"] == results[0][0]["design"]["block_run"]
        assert d["mode"] == "round" and d["arms"] == [c.id for c in block.arms]
        # the block's wall time per phase; the rounds' own time is inside "rounds"
        assert list(d["phases"]) == ["deploy", "prove", "start", "joined", "rounds", "finish",
                                     "collect", "cleanup"]
        assert d["phases"]["rounds"] >= max(e for _, e, _, _ in spans) - min(
            s for s, _, _, _ in spans) - 0.5
        positions = [r["position"] for r in row["metrics"]["rounds"]]
        assert positions == [ran[k].index(row["cell"]["id"]) for k in range(ROUNDS)]
    assert ran == [[c.id for c in block.round_order(r)] for r in range(1, ROUNDS + 1)]
    # the hooks around the rounds (a profiler's on and off): before the first, after the last
    hooks = live.memo["hooks"]
    assert hooks["before"] <= min(s for s, _, _, _ in spans)
    assert hooks["after"] >= max(e for _, e, _, _ in spans)


def test_each_round_is_charged_its_own_cpu(live: Live) -> None:
    for row in _rows(live).values():
        rounds = row["metrics"]["rounds"]
        for r in rounds:
            # 3 clients x 25 SGD steps of the small CNN: well above 0.1 CPU-s a round
            assert r["cpu_seconds"] > 0.1, r
            assert set(r["cpu_by_container"]) >= {"fl-server", "fl-client-0"}
            assert r["cpu_machine_seconds"] >= r["cpu_seconds"] * 0.9
            assert r["cpu_other_seconds"] >= 0
        res = row["resources"]
        assert res["source"] == "cgroup"
        peaks = [c["memory_peak_bytes"] for pod in res["pods"].values() for c in pod.values()]
        assert peaks and all(p > 50 << 20 for p in peaks)  # a torch process: tens of MB at least
        total = sum(c["cpu_seconds"] for pod in res["pods"].values() for c in pod.values())
        assert total == pytest.approx(sum(r["cpu_seconds"] for r in rounds), rel=0.01)


def test_a_known_delay_is_found_where_it_was_put(live: Live) -> None:
    rows = _rows(live)
    base = rows["SEC0-NET0-iid-s0"]
    delayed = rows[f"SEC0-NET0-iid-s0-delay{DELAY_MS:g}ms"]
    assert all(r["injected_delay_seconds"] >= DELAY_MS / 1000 for r in delayed["metrics"]["rounds"])
    for metric in ("comm_seconds", "path_seconds"):
        d = compare.difference([(delayed, base)], 0.5, metric)
        assert d.ci_low > 0.5 * DELAY_MS / 1000, (metric, d)  # found, and about its size
        assert 0.8 * DELAY_MS / 1000 < d.estimate < 1.6 * DELAY_MS / 1000, (metric, d)
    whole = compare.ratio([(delayed, base)], 0.5)
    assert whole.ci_low > 1.0, whole
    assert base["cell"]["check"] is None and delayed["cell"]["check"] == f"delay{DELAY_MS:g}ms"
    assert json.dumps(delayed["extra_info"])  # benchmark extra_info stays JSON


def test_the_same_arm_twice_stays_near_one(live: Live) -> None:
    rows = _rows(live)
    aa = compare.ratio([(rows["SEC0-NET0-iid-s0-aa"], rows["SEC0-NET0-iid-s0"])], 0.5)
    assert aa.paired and aa.blocks == 1
    assert 0.85 < aa.estimate < 1.18, aa  # loose: 6 rounds on a shared machine
