"""The failure taxonomy assigns nothing in runs without a fault, although their proofs cause
policy denials and TLS refusals on purpose (SEC3), and a shaped link retransmits (NET2): the
evidence it reads is what happened outside the proofs. The runs are the other integration
tests' (memoised), so this costs nothing when they ran first."""

from __future__ import annotations

import pytest
from integration_support import Live
from test_fl_sec3 import sec3
from test_net_profiles import cell

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.mark.parametrize("which", ["SEC3-native", "SEC3-sidecar", "NET2", "NET0"])
def test_no_fault_run_gets_no_failure_label_and_its_proofs_leave_no_evidence(
    live: Live, which: str
) -> None:
    c = sec3(which.split("-")[1]) if which.startswith("SEC3") else cell(which)
    row, _ = live.run(c)
    assert row["error"] is None, row["error"]
    assert row["failures"] == [] and row["failures_by_class"] == {}, row["failures"]
    clients = {k: v for k, v in row["evidence"].items() if k != "server"}
    assert len(clients) == c.workload.clients, row["evidence"]
    # the proofs' own denials and refusals are not in the evidence (they were, before the
    # rounds were released): a client of a quiet run shows none
    assert all(v["denied_egress"] == 0 and v["dropped_other"] == 0 for v in clients.values()), \
        row["evidence"]
    assert sum(row["evidence"]["server"]["handshake_refusals"].values()) == 0, row["evidence"]
    if which.startswith("SEC3"):
        proofs = {p["name"]: p for p in row["proofs"]}
        assert proofs["client-to-client"]["passed"] and proofs["other-ca-refused"]["passed"]
