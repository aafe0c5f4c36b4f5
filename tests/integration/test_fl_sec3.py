"""Issue 4: an FL run of 5 clients x 5 rounds completes at SEC3 in both mTLS modes through
``runner.run_cell``, its proofs (all of SEC3's, plus the wire capture of round 1) passed before
and after the rounds, and the run shows the client identities the server accepted:

* native: the FL server itself terminates mTLS, so every ``client_update`` event carries the
  SPIFFE identity of the client's certificate, ``spiffe://cluster.local/ns/<ns>/sa/fl-client``;
* sidecar: the application only sees plaintext from its in-pod proxy (no identity in its
  events, by design); the accepted identity is read from the server-side stunnel's log
  (``row["overlays"]["mtls"]["accepted_subjects"]``), where stunnel logs the subject of each
  accepted peer certificate, i.e. ``CN=<identity DNS name>``.

These SEC3 runs are also this suite's proof-pass check for SEC3 (``run_cell`` runs the same
``deploy_and_prove`` as ``prove.prove``); SEC0-SEC2 are in test_sec_proofs.py.
"""

from __future__ import annotations

import pytest
from integration_support import Live, Row, events_of, row_proofs
from proof_expectations import HARDENED

from k8s_fixtures.tls.sidecar import identity_dns_from_spiffe
from pytest_ztfl import runner
from pytest_ztfl.matrix import Cell, Workload

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

CLIENTS, ROUNDS = 5, 5
SEC3_PROOFS = {
    "dns": "resolves",
    "rogue-to-server": "blocked",
    "client-to-client": "blocked",
    "no-cert-refused": "refused",
    "other-ca-refused": "refused",
    **HARDENED,
    "wire": "tls-only",
}


def sec3(mode: str) -> Cell:
    return Cell(
        sec="SEC3",
        net="NET0",
        data="iid",
        seed=0,
        workload=Workload(clients=CLIENTS, rounds=ROUNDS),
        mtls=mode,
    )


def identity(cell: Cell, service_account: str) -> str:
    return f"spiffe://cluster.local/ns/{runner.namespace_for(cell)}/sa/{service_account}"


def completed(row: Row) -> None:
    assert row["success"], f"{row['success_reason']}; proofs: {row['proofs']}"
    assert row["error"] is None
    rounds = row["metrics"]["rounds"]
    assert len(rounds) == ROUNDS
    assert all(r["ok"] and r["participants"] == CLIENTS for r in rounds), rounds


@pytest.mark.parametrize("mode", ["native", "sidecar"])
def test_sec3_run_completes_with_every_proof(live: Live, mode: str) -> None:
    cell = sec3(mode)
    row, events = live.run(cell)
    completed(row)
    proofs = row_proofs(row)
    assert {n: p["expect"] for n, p in proofs.items()} == SEC3_PROOFS
    assert all(p["passed"] for p in proofs.values()), row["proofs"]
    assert "model bytes not seen in clear, all flows TLS" in proofs["wire"]["detail"]
    assert row["overlays"]["mtls"]["mode"] == mode
    assert row["overlays"]["netpol"]["enabled"] is True
    assert len(events_of(events, "client_update")) == CLIENTS * ROUNDS


def test_native_events_carry_the_accepted_client_identity(live: Live) -> None:
    cell = sec3("native")
    row, events = live.run(cell)
    completed(row)
    client = identity(cell, "fl-client")
    updates = events_of(events, "client_update")
    assert len(updates) == CLIENTS * ROUNDS
    assert {u["identity"] for u in updates} == {client}
    assert {j["identity"] for j in events_of(events, "client_joined")} == {client}
    assert row["metrics"]["identities"] == [client]


def test_sidecar_proxy_log_shows_the_accepted_client_identity(live: Live) -> None:
    """The server-side proxy accepted exactly one identity, and it is the client's (its
    subject names the fl-client ServiceAccount of this namespace, not the server's); the
    application's own events carry no identity (it only sees the proxy's plaintext)."""
    cell = sec3("sidecar")
    row, events = live.run(cell)
    completed(row)
    assert {u["identity"] for u in events_of(events, "client_update")} == {None}
    subjects = row["overlays"]["mtls"]["accepted_subjects"]
    assert len(subjects) == 1 and subjects[0].startswith("CN="), subjects
    cn = subjects[0].removeprefix("CN=")
    client_dns = identity_dns_from_spiffe(identity(cell, "fl-client"))
    server_dns = identity_dns_from_spiffe(identity(cell, "fl-server"))
    assert cn.startswith(f"fl-client.{runner.namespace_for(cell)}.serviceaccount.identity.")
    assert client_dns.startswith(cn) and not server_dns.startswith(cn)


def test_sidecar_accepted_identity_is_shown_in_full(live: Live) -> None:
    cell = sec3("sidecar")
    row, _ = live.run(cell)
    if not row["success"]:
        pytest.fail(f"the sidecar run failed: {row['success_reason']}")
    # stunnel logs only the (64-character-capped) subject; the runner maps it back to the
    # SPIFFE id the certificate was issued for
    shown = row["overlays"]["mtls"]["accepted_identities"]
    assert shown == [identity(cell, "fl-client")], shown
