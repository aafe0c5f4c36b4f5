"""The failure taxonomy's rules, without a cluster: each class from its own evidence, the
order in which evidence is weighed, "unclassified" when nothing fits, and invariants over
generated runs (the live scenarios and the confusion matrix: test_fault_scenarios.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fl_app.events import ParsedLog
from k8s_fixtures.cluster import NetnsCounters
from pytest_ztfl.taxonomy import (
    CLASSES,
    NEVER_JOINED,
    ClientEvidence,
    RunEvidence,
    classify,
    counts,
)

QUIET = NetnsCounters(0, 0, 0, 0, 0)


def _log(*events: dict[str, Any]) -> ParsedLog:
    joined = [{"event": "client_joined", "client": c} for c in (0, 1, 2)]
    return ParsedLog([*joined, *events])


def _fail(cls: str, reason: str = "r", client: int = 1) -> dict[str, Any]:
    return {"event": "failure", "round": 2, "client": client, "class": cls, "reason": reason}


def _one(log: ParsedLog, ev: ClientEvidence | None = None, **run: Any) -> tuple[str, str]:
    labels = classify(RunEvidence(3, log, {1: ev or ClientEvidence()}, **run))
    assert len(labels) == 1, labels
    return labels[0].cls, labels[0].why


def test_each_class_from_its_own_evidence() -> None:
    timeout = _log(_fail("timeout"))
    assert _one(_log(_fail("invalid_update")))[0] == "workload"
    assert _one(_log(_fail("protocol", "undecodable")))[0] == "workload"
    assert _one(_log(_fail("mtls", "identity_not_allowed")))[0] == "mtls"
    assert _one(timeout, ClientEvidence(pod={"reason": "OOMKilled"}))[0] == "resource"
    assert _one(timeout, ClientEvidence(net=NetnsCounters(0, 3, 0, 0, 0)))[0] == "netpol"
    assert _one(timeout, ClientEvidence(pod={"restarts": 1}))[0] == "workload"
    assert _one(timeout, ClientEvidence(net=NetnsCounters(0, 0, 5, 0, 7)))[0] == "netem"
    assert _one(timeout, ClientEvidence(net=NetnsCounters(0, 0, 5, 2, 0)))[0] == "netem"
    assert _one(timeout, ClientEvidence(throttled_s=4.0))[0] == "resource"
    labels = classify(RunEvidence(3, timeout, {}, emulation_failed="delay line exited"))
    assert [(lb.event, lb.cls) for lb in labels] == [("emulation_stopped", "netem"),
                                                     ("timeout", "netem")]


def test_nothing_fits_is_unclassified_with_what_was_looked_at() -> None:
    cls, why = _one(_log(_fail("timeout")), ClientEvidence(net=QUIET, throttled_s=0.01))
    assert cls == "unclassified"
    assert "timeout" in why and "throttled 0.01 s" in why and "denied out/in 0/0" in why
    # retransmissions without a timeout or a drop are the normal life of a shaped link
    assert _one(_log(_fail("timeout")), ClientEvidence(net=NetnsCounters(0, 0, 9, 0, 0)))[0] \
        == "unclassified"


def test_a_late_update_is_judged_by_the_clients_evidence_not_as_a_bad_message() -> None:
    late = _log(_fail("protocol", "late_update"))
    assert _one(late, ClientEvidence(throttled_s=3.0))[0] == "resource"
    assert _one(late)[0] == "unclassified"


def test_a_client_that_never_joined_is_labelled_once_from_its_evidence() -> None:
    log = ParsedLog([{"event": "client_joined", "client": c} for c in (0, 2)])

    def never(ev: ClientEvidence, **run: Any) -> str:
        labels = classify(RunEvidence(3, log, {1: ev}, **run))
        assert [(lb.client, lb.event) for lb in labels] == [(1, NEVER_JOINED)], labels
        return labels[0].cls

    assert never(ClientEvidence(pod={"reason": "OOMKilled", "exit_code": 137})) == "resource"
    assert never(ClientEvidence(net=NetnsCounters(0, 12, 0, 0, 0))) == "netpol"
    assert never(ClientEvidence(net=QUIET), refusals={"expired": 4}) == "mtls"
    assert never(ClientEvidence(net=QUIET), refusals={"expired": 0}) == "unclassified"
    # policy evidence outranks the handshake refusals (they are not tied to a client)
    assert never(ClientEvidence(net=NetnsCounters(0, 2, 0, 0, 0)), refusals={"x": 1}) == "netpol"


def test_a_quiet_run_has_no_labels_and_a_silent_server_none_either() -> None:
    assert classify(RunEvidence(3, _log(), {c: ClientEvidence(net=QUIET) for c in range(3)})) \
        == []
    assert classify(RunEvidence(3, ParsedLog(), {})) == []


EVIDENCE = st.builds(
    ClientEvidence,
    pod=st.none() | st.fixed_dictionaries({
        "restarts": st.integers(0, 2), "exit_code": st.sampled_from([None, 0, 1, 137]),
        "reason": st.sampled_from([None, "Completed", "Error", "OOMKilled"])}),
    net=st.none() | st.builds(NetnsCounters, *(st.integers(0, 5) for _ in range(5))),
    throttled_s=st.none() | st.floats(0, 10),
)
FAILURE = st.fixed_dictionaries({
    "event": st.just("failure"), "round": st.integers(1, 5), "client": st.integers(0, 3),
    "class": st.sampled_from(["timeout", "disconnect", "protocol", "invalid_update", "mtls",
                              "client_error"]),
    "reason": st.sampled_from(["late_update", "undecodable", "stream_closed", "x"])})


@given(st.lists(FAILURE, max_size=6), st.sets(st.integers(0, 3)),
       st.dictionaries(st.integers(0, 3), EVIDENCE), st.none() | st.text(min_size=1))
def test_every_failure_and_absent_client_gets_exactly_one_known_class(
    failures: list[dict[str, Any]], joined: set[int], per: dict[int, ClientEvidence],
    emulation: str | None,
) -> None:
    log = ParsedLog([*({"event": "client_joined", "client": c} for c in joined),
                     {"event": "round_start", "round": 1}, *failures])
    labels = classify(RunEvidence(4, log, per, emulation_failed=emulation))
    failed = {f["client"] for f in failures}
    absent = [c for c in range(4) if c not in joined and c not in failed]
    assert len(labels) == len(failures) + len(absent) + (1 if emulation else 0)
    assert all(lb.cls in CLASSES and lb.why for lb in labels)
    assert sum(counts(labels).values()) == len(labels)
    if emulation:
        assert {lb.cls for lb in labels if lb.event not in ("invalid_update", "mtls")} \
            <= {"netem", "workload"}
