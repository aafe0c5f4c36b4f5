"""Every fault scenario of ``pytest_ztfl.faults``, injected for real on the local backend and
measured through ``runner.run_cell`` (one shared cluster, 3 clients, min 2 participants).

Each test asserts three things: the failure is named right (fl_app's class in the server's
events where the server can see it, and the class the taxonomy gave it from evidence alone,
blind to the scenario; every run is recorded for the session's confusion matrix), the run goes
on when enough participants remain (every round closes ok; a partitioned or restarted client
comes back), and the cell's success verdict is the seed study's (``rows.success``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from reliability_support import FaultRun

from pytest_ztfl import faults
from pytest_ztfl.matrix import Cell, Workload

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

BASE = Workload(
    clients=3, rounds=4, min_participants=2, round_deadline=3.0, max_steps=5, eval_every=4,
    target_accuracy=0.99,
)
TARGET = faults.TARGET


def cell(fault: str, sec: str = "SEC0", net: str = "NET0", **wl: Any) -> Cell:
    w = replace(BASE, **wl)
    if "rounds" in wl:
        w = replace(w, eval_every=wl["rounds"])
    return Cell(sec, net, "iid", 0, w, mtls="native" if sec in ("SEC2", "SEC3") else None,
                fault=fault)


def assert_continued(fr: FaultRun, rounds: int) -> None:
    """The run went on: it ended normally and every round had enough participants."""
    ends = fr.of("round_end")
    assert fr.of("run_end"), f"no run_end: {fr.row['success_reason']}"
    assert len(ends) == rounds, [e["round"] for e in ends]
    assert all(e["ok"] for e in ends), [(e["round"], e["participants"]) for e in ends]
    assert fr.row["error"] is None, fr.row["error"]


def assert_classes(fr: FaultRun, expect: dict[str, int] | str) -> None:
    """The taxonomy's failure classes: exactly ``expect`` (a class: >= 1 of it, nothing else),
    and the row says they agree with the scenario's class."""
    labels = fr.row["failures"], fr.row["evidence"]
    if isinstance(expect, str):
        assert set(fr.classes) == {expect}, labels
        assert fr.classes[expect] >= 1
    else:
        assert fr.classes == expect, labels
    assert fr.row["overlays"]["fault"]["agrees"] is True, fr.row["overlays"]["fault"]


def participated_after(fr: FaultRun, wall: float) -> list[int]:
    """Rounds started after ``wall`` in which the target client's update was accepted."""
    starts = {e["round"]: e["wall"] for e in fr.of("round_start")}
    return [e["round"] for e in fr.of("round_end")
            if TARGET in e["participants"] and starts[e["round"]] > wall]


# ---------------------------------------------------------------------------- workload


def test_client_sigkill_mid_round_is_a_workload_failure_and_the_client_rejoins(
    run_fault: Any,
) -> None:
    # 60 local steps make rounds long enough (~0.4 s) for the restarted client (~5 s of
    # start-up idle, 2-3x that under load, plus the restart back-off) to rejoin while ~20 s of
    # rounds remain.
    # A generous deadline: the kill's disconnect is immediate, and a loaded machine must not
    # add timeouts of its own.
    fr = run_fault(cell("client-kill", rounds=50, max_steps=60, round_deadline=20.0))
    kills = [a for a in fr.actions if a.kind == "sigkill"]
    assert kills, fr.actions
    assert_continued(fr, 50)
    mine = fr.failures(TARGET)
    assert [(f["class"], f["reason"]) for f in mine] == [("disconnect", "stream_closed")]
    assert mine[0]["round"] == 2
    assert_classes(fr, {"workload": 1})
    pod = next(p for p in fr.row["pods"] if p["name"] == f"fl-client-{TARGET}")
    assert pod["restarts"] == 1, pod
    assert participated_after(fr, kills[0].end), "the restarted client never took part again"
    # seed study: a pod restart makes the cell unsuccessful
    assert fr.row["success"] is False and "pod restarts" in fr.row["success_reason"]


def test_a_client_killed_by_a_stranger_is_classified_workload_without_a_scenario(
    ztfl_backend: Any,
) -> None:
    """No fault scenario runs: the test, a stranger to the harness, SIGKILLs client 1 through
    the cluster once round 1 has ended. The taxonomy, which never hears of it, labels the
    failure from the pod's exit alone."""
    import signal
    import threading

    import taxonomy_record

    from k8s_fixtures import workload
    from pytest_ztfl import runner

    cluster = ztfl_backend.cluster
    c = Cell("SEC0", "NET0", "iid", 0, replace(BASE, rounds=10, eval_every=10))
    ns = runner.namespace_for(c)
    killers: list[threading.Thread] = []

    def progress(line: str, level: int = 0) -> None:
        if line.startswith("  round 1:") and not killers:
            killers.append(threading.Thread(target=cluster.signal, args=(
                ns, f"{workload.CLIENT}-{TARGET}", workload.CLIENT, signal.SIGKILL)))
            killers[0].start()

    row, _ = runner.run_cell(ztfl_backend, c, progress=progress)
    assert killers, "round 1 never ended"
    killers[0].join(30)
    taxonomy_record.record(row, "(stranger) SIGKILL", "workload")
    assert row["error"] is None, row["error"]
    mine = [f for f in row["failures"] if f["client"] == TARGET]
    assert [f["class"] for f in mine] == ["workload"], row["failures"]
    assert "exited with 137" in mine[0]["why"] or "restarted" in mine[0]["why"], mine
    assert row["failures_by_class"] == {"workload": 1}, row["failures"]
    assert "fault" not in row["overlays"]


def test_malformed_update_from_a_hostile_peer_is_refused_and_not_aggregated(
    run_fault: Any,
) -> None:
    fr = run_fault(cell("malformed-update", rounds=4))
    hostile = [a for a in fr.actions if a.kind == "hostile"]
    assert hostile and hostile[0].detail.get("submitted"), fr.actions
    assert hostile[0].detail["status"] == "INVALID_ARGUMENT", hostile[0].detail
    hid = hostile[0].client
    assert hid == 3
    mine = fr.failures(hid)
    assert [f["class"] for f in mine] == ["invalid_update"], mine
    assert_continued(fr, 4)
    bad_round = hostile[0].detail["round"]
    end = next(e for e in fr.of("round_end") if e["round"] == bad_round)
    assert hid not in end["participants"] and sorted(end["participants"]) == [0, 1, 2]
    assert_classes(fr, {"workload": 1})
    assert fr.row["success"] is True, fr.row["success_reason"]


# ---------------------------------------------------------------------------- resource


def test_oom_killed_client_is_a_resource_failure(run_fault: Any) -> None:
    fr = run_fault(cell("client-oom"))
    pod = next(p for p in fr.row["pods"] if p["name"] == f"fl-client-{TARGET}")
    assert pod["reason"] == "OOMKilled", pod
    assert TARGET not in {e["client"] for e in fr.of("client_joined")}
    assert_continued(fr, 4)
    assert all(TARGET not in e["participants"] for e in fr.of("round_end"))
    assert_classes(fr, {"resource": 1})
    assert fr.row["success"] is True, fr.row["success_reason"]


def test_cpu_throttled_client_misses_deadlines_as_a_resource_failure(run_fault: Any) -> None:
    # 100 local steps: ~0.6 CPU-s per round; at a tenth of a core >= 6 s, over the 4 s
    # deadline, while an unthrottled client meets it unless it gets < 15 % of a core.
    fr = run_fault(cell("cpu-throttle", rounds=3, max_steps=100, round_deadline=4.0))
    mine = fr.failures(TARGET)
    assert any(f["class"] == "timeout" for f in mine), mine
    # A straggler's update arrives after its round closed (stale), or its stream ends: all of
    # it is the same resource fault.
    assert {f["class"] for f in mine} <= {"timeout", "protocol", "disconnect"}, mine
    assert not [f for f in fr.failures() if f["client"] != TARGET], fr.failures()
    assert_continued(fr, 3)
    assert all(sorted(e["participants"]) == [0, 2] for e in fr.of("round_end"))
    assert_classes(fr, "resource")
    assert fr.row["success"] is False and "timed out" in fr.row["success_reason"]


# ---------------------------------------------------------------------------- mTLS


@pytest.mark.parametrize(
    ("fault", "reason"), [("mtls-expired", "expired"), ("mtls-other-ca", "unknown_ca")]
)
def test_client_with_a_bad_certificate_is_refused_as_mtls(
    run_fault: Any, fault: str, reason: str
) -> None:
    from k8s_fixtures.tls.grpc_log import grpc_handshake_failures

    fr = run_fault(cell(fault, sec="SEC2"))
    refusals = [f.reason for f in grpc_handshake_failures(fr.server_log)]
    assert refusals.count(reason) >= 1, refusals
    assert TARGET not in {e["client"] for e in fr.of("client_joined")}
    assert_continued(fr, 4)
    assert_classes(fr, {"mtls": 1})
    assert fr.row["success"] is True, fr.row["success_reason"]


def test_identity_not_on_the_allow_list_is_refused_as_mtls(run_fault: Any) -> None:
    fr = run_fault(cell("mtls-identity", sec="SEC2"))
    mine = fr.failures(TARGET)
    assert mine and {(f["class"], f["reason"]) for f in mine} == {
        ("mtls", "identity_not_allowed")
    }, mine
    assert faults.ROGUE_SA in mine[0]["detail"]
    assert_continued(fr, 4)
    assert all(TARGET not in e["participants"] for e in fr.of("round_end"))
    assert_classes(fr, "mtls")
    assert fr.row["success"] is True, fr.row["success_reason"]


# ---------------------------------------------------------------------------- NetworkPolicy


@pytest.mark.parametrize("fault", ["netpol-no-dns", "netpol-deny-port"])
def test_policy_that_shuts_a_client_out_is_a_netpol_failure(run_fault: Any, fault: str) -> None:
    fr = run_fault(cell(fault, sec="SEC1"))
    assert TARGET not in {e["client"] for e in fr.of("client_joined")}
    # the evidence: the client's own attempts, refused by its policy's deny rules (no probe of
    # the harness's: outside the proofs, nothing else runs in that pod)
    assert fr.row["evidence"][str(TARGET)]["denied_egress"] > 0, fr.row["evidence"]
    assert [(f["client"], f["event"]) for f in fr.row["failures"]] == [(TARGET, "never_joined")]
    assert_continued(fr, 4)
    assert_classes(fr, {"netpol": 1})
    # the other clients were not affected: the proofs passed and they took part in every round
    assert all(sorted(e["participants"]) == [0, 2] for e in fr.of("round_end"))
    assert fr.row["success"] is True, fr.row["success_reason"]


# ---------------------------------------------------------------------------- network


def test_loss_bursts_are_survived_and_any_failure_is_netem(run_fault: Any) -> None:
    # A 1 s deadline (rounds take ~0.2 s): a retransmission timeout in a 2 s burst of 30 % loss
    # can make the target miss one (2 and 4 of 20 rounds in two runs), and what fails must be
    # netem; the run goes on.
    fr = run_fault(cell("netem-loss", rounds=20, round_deadline=1.0))
    bursts = [a for a in fr.actions if a.kind == "loss"]
    assert bursts and bursts[0].detail["dropped_packets"] > 0, fr.actions
    assert not [a for a in fr.actions if a.kind == "error"], fr.actions
    assert_continued(fr, 20)
    assert not [f for f in fr.failures() if f["client"] != TARGET], fr.failures()
    assert set(fr.classes) <= {"netem"}, (fr.classes, fr.failures())
    timeouts = sum(1 for f in fr.failures() if f["class"] == "timeout")
    assert fr.row["success"] is (timeouts == 0), fr.row["success_reason"]
    assert len(bursts) == 3, fr.actions


def test_partitioned_client_times_out_as_netem_and_rejoins_after_healing(run_fault: Any) -> None:
    fr = run_fault(cell("netem-partition", rounds=12))
    cut = [a for a in fr.actions if a.kind == "partition"]
    assert cut and cut[0].detail["dropped_packets"] > 0, fr.actions
    mine = fr.failures(TARGET)
    during = [f for f in mine if cut[0].covers(f["wall"])]
    assert during and all(f["class"] == "timeout" for f in during), mine
    assert not [f for f in fr.failures() if f["client"] != TARGET], fr.failures()
    assert_continued(fr, 12)
    assert_classes(fr, "netem")
    assert fr.row["success"] is False and "timed out" in fr.row["success_reason"]
    assert participated_after(fr, cut[0].end), ("the client did not rejoin after healing", mine)


def test_delay_line_killed_mid_run_fails_the_cell_as_netem(run_fault: Any) -> None:
    fr = run_fault(cell("delayline-kill", net="NET2"))
    kills = [a for a in fr.actions if a.kind == "delayline-kill"]
    assert kills and "pid" in kills[0].detail, (fr.actions, fr.row["overlays"]["net"])
    assert str(fr.row["error"]).startswith("netem:"), fr.row["error"]
    assert fr.row["success"] is False
    assert set(fr.classes) <= {"netem"}, fr.classes
