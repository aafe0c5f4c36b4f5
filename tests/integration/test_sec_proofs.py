"""Issue 4 on the real local backend: the proofs of enforcement pass for SEC0-SEC3 with both
mTLS modes, and each proof FAILS when its control is deliberately left off, so a cell can never
be measured as SEC1/SEC2/SEC3 while the control is not in force.

Every test shares the session's cluster (``live``); each deployment lives in its own namespace,
deleted afterwards.
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from typing import Any

import pytest
from integration_support import (
    Live,
    by_name,
    events_of,
    explain,
    fl_run_with,
    row_proofs,
)
from proof_expectations import EXPECTED, OPEN, REFUSED

from k8s_fixtures import proofs as pf
from k8s_fixtures import workload
from pytest_ztfl import cellplan, prove, runner
from pytest_ztfl.matrix import Cell, Workload

pytestmark = pytest.mark.privileged

TINY = Workload(clients=1, rounds=1, min_participants=1, eval_every=1)


def tiny(sec: str, mtls: str | None = None) -> Cell:
    return Cell(sec=sec, net="NET0", data="iid", seed=0, workload=TINY, mtls=mtls)


@pytest.mark.parametrize(
    ("sec", "mtls"),
    [
        ("SEC0", None),
        ("SEC1", None),
        ("SEC2", "native"),
        ("SEC2", "sidecar"),
    ],
)
def test_proofs_pass(live: Live, sec: str, mtls: str | None) -> None:
    """Every proof of the level runs with the expectation of that level and passes: SEC0's
    rogue connection *succeeds* (the probe can see a hole), SEC1/SEC3 block it and
    client-to-client, SEC2/SEC3 refuse a cert-less and an other-CA client with the reason read
    on the server side (gRPC's log in native mode, the stunnel proxy's in sidecar mode).
    SEC3 (both modes) is proved by the 5 x 5 SEC3 runs of test_fl_sec3.py, whose
    ``run_cell`` runs the same ``deploy_and_prove``: not deployed a second time here."""
    cell = prove.probe_cell(sec, mtls or "sidecar")
    assert cell.mtls == mtls
    results = prove.prove(live.backend, cell)
    assert {p.name: p.expect for p in results} == EXPECTED[sec], explain(results)
    assert all(p.passed for p in results), explain(results)
    got = by_name(results)
    if sec in ("SEC0", "SEC2"):
        assert "connected" in got["rogue-to-server"].detail
    if sec in ("SEC2", "SEC3"):
        assert "server side: no_client_cert" in got["no-cert-refused"].detail
        assert "server side: unknown_ca" in got["other-ca-refused"].detail


@pytest.fixture(scope="module")
def left_off(live: Live) -> dict[str, list[pf.Proof]]:
    """One deployment of a SEC3 cell rendered with BOTH controls off (no NetworkPolicy, no
    TLS: the objects of a SEC0 run), proved as SEC1 and as SEC2 in each mTLS mode. The proofs
    are independent of each other (the netpol ones are plain TCP connects, the refusal ones
    read the server side), so one deployment stands for three; it saves two deployments of
    the suite's time budget."""
    out: dict[str, list[pf.Proof]] = {}

    def prove_as_claimed(plan: pf.ProofPlan) -> None:
        # as SEC1 and SEC2 claim (no hardening): this deployment is a SEC3 one, restricted
        out["SEC1"] = pf.run_proofs(live.cluster, replace(plan, netpol=True, tls="none",
                                                          restricted=False))
        for mode in ("native", "sidecar"):
            out[mode] = pf.run_proofs(live.cluster, replace(plan, netpol=False, tls=mode,
                                                            restricted=False))

    live.prove_left_off(tiny("SEC3", "native"), then=prove_as_claimed, netpol=False, tls="none")
    return out


def test_sec1_without_policies_fails_its_proofs(left_off: dict[str, list[pf.Proof]]) -> None:
    """Rendered without the NetworkPolicies but proved as SEC1 (``ProofPlan(netpol=True)``):
    the rogue pod and the client-labelled peer reach their targets, so both netpol proofs are
    reported FAILED (not a pass, not an error); DNS, which needs no policy, still passes, and
    so does SEC1's mTLS-off proof (a plaintext client without a certificate is answered)."""
    results = left_off["SEC1"]
    got = by_name(results)
    assert {p.name: p.expect for p in results} == EXPECTED["SEC1"], explain(results)
    assert got["no-cert-refused"].passed, explain(results)
    assert "the server answered UNIMPLEMENTED" in got["no-cert-refused"].detail
    for name in ("rogue-to-server", "client-to-client"):
        assert got[name].expect == "blocked"
        assert not got[name].passed, explain(results)
        assert ": connected (positive controls: " in got[name].detail, got[name].detail
    assert got["dns"].passed, explain(results)


def test_rogue_proof_fails_when_the_server_ingress_rule_admits_everyone(live: Live) -> None:
    """The rogue pod's own egress is opened for the proof (``ROGUE_EGRESS``), so only the
    server's ingress rules can block it: replace ``ztfl-fl-server-ingress`` by one that admits
    every pod and the rogue proof fails, while the clients' egress rule still blocks
    client-to-client."""
    out: list[pf.Proof] = []

    def break_server_ingress(plan: pf.ProofPlan) -> None:
        live.cluster.apply([{
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "ztfl-fl-server-ingress", "namespace": plan.namespace},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "fl-server"}},
                "policyTypes": ["Ingress"],
                "ingress": [{}],
            },
        }])
        out.extend(pf.run_proofs(live.cluster, plan))

    before = by_name(live.prove_left_off(tiny("SEC1"), then=break_server_ingress))
    assert before["rogue-to-server"].passed, before["rogue-to-server"].detail  # intact rules
    after = by_name(out)
    assert not after["rogue-to-server"].passed, explain(out)
    assert ": connected (positive controls: " in after["rogue-to-server"].detail, explain(out)
    assert after["client-to-client"].passed, explain(out)


# Everything the pod sends is dropped, as a policy's drop would make it: its connects time out.
DROP_ALL = """table inet ztfl_broken_probe {
  chain out { type filter hook output priority 0; policy drop; }
}
"""


def test_a_rogue_that_reaches_nothing_cannot_pass_as_blocked(live: Live) -> None:
    """A broken rogue (everything it sends dropped inside its own namespace) times out on the
    server's port exactly as a blocking policy makes it; without a positive control that
    passed as "blocked". Its control (reaching the pod every policy admits) fails, so the
    proof fails, naming the missing positive control; client-to-client is untouched."""
    out: list[pf.Proof] = []

    def break_rogue(plan: pf.ProofPlan) -> None:
        netns = live.cluster.pod_info(plan.namespace, pf.ROGUE).netns
        live.cluster.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=DROP_ALL)
        out.extend(pf.run_proofs(live.cluster, plan))

    before = by_name(live.prove_left_off(tiny("SEC1"), then=break_rogue))
    assert before["rogue-to-server"].passed, explain(list(before.values()))
    got = by_name(out)
    rogue = got["rogue-to-server"]
    assert not rogue.passed, explain(out)
    assert rogue.detail.startswith(f"no positive control (rogue -> {pf.OPEN} (admitted): "), (
        rogue.detail)
    assert "timed out" in rogue.detail or "TimeoutError" in rogue.detail, rogue.detail
    assert got["client-to-client"].passed, explain(out)


def test_a_closed_server_port_cannot_pass_as_blocked(live: Live) -> None:
    """With the server process gone its port is closed: an allowed client is refused
    (ECONNREFUSED) like the rogue. A refusal then says nothing about the policy, so
    rogue-to-server fails, naming the client's failed positive control."""
    out: list[pf.Proof] = []

    def close_port(plan: pf.ProofPlan) -> None:
        c = live.cluster
        c.signal(plan.namespace, workload.SERVER, workload.SERVER, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(x.name == workload.SERVER and x.state == "running"
                  for x in c.pod_status(plan.namespace, workload.SERVER).containers):
            assert time.monotonic() < deadline, "the server process outlived SIGKILL"
            time.sleep(0.05)  # polling interval of a deadline loop
        out.extend(pf.run_proofs(c, plan))

    live.prove_left_off(tiny("SEC1"), then=close_port)
    got = by_name(out)
    rogue = got["rogue-to-server"]
    assert not rogue.passed, explain(out)
    assert rogue.detail.startswith("no positive control (fl-client-0 -> fl-server:50051: "), (
        rogue.detail)
    assert "ConnectionRefusedError" in rogue.detail.split("so the blocked")[0], rogue.detail
    assert not got["dns"].passed, explain(out)


@pytest.mark.parametrize("mode", ["native", "sidecar"])
def test_mtls_off_fails_the_refusal_proofs(
    left_off: dict[str, list[pf.Proof]], mode: str
) -> None:
    """Rendered with TLS off but proved as SEC2 (mTLS ``mode``): the server accepts plaintext,
    no refusal is logged on its side, so no-cert-refused and other-ca-refused FAIL. In sidecar
    mode the server has no proxy container at all: the proofs must still be reported as
    failed, naming that (not raise a ClusterError that ends the cell with a ``cluster:`` error
    instead of a failed proof)."""
    results = left_off[mode]
    got = by_name(results)
    assert set(got) == set(EXPECTED["SEC2"]), explain(results)
    for name in REFUSED:
        assert got[name].expect == "refused"
        assert not got[name].passed, explain(results)
    why = {"native": "no refusal logged", "sidecar": "no container 'ztfl-proxy'"}[mode]
    assert why in got["no-cert-refused"].detail, explain(results)
    assert all(got[n].passed for n in OPEN), explain(results)


@pytest.mark.slow
def test_cell_with_failed_proofs_is_never_measured(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SEC1 cell whose objects lack the policies, run through ``runner.run_cell``: the cell
    fails with "proof of enforcement failed" naming the netpol proofs, and no round is run. The
    server's own log (read just before the harness deletes the namespace) has no round event,
    and the release file the server waits on before round 1 was never created."""
    cell = tiny("SEC1")
    ns = runner.namespace_for(cell)
    seen: dict[str, Any] = {}
    real_delete = live.cluster.delete

    def delete(objects: Any = None, *, namespace: str | None = None) -> None:
        if namespace == ns and not seen:
            c = live.cluster
            seen["log"] = list(c.logs(ns, workload.SERVER, container=workload.SERVER))
            hold_dir = cellplan.HOLD_FILE.rsplit("/", 1)[0]
            seen["hold_dir_rc"] = c.exec(ns, workload.SERVER, ["test", "-d", hold_dir]).rc
            hold = ["test", "-e", cellplan.HOLD_FILE]
            seen["hold_file_rc"] = c.exec(ns, workload.SERVER, hold).rc
        real_delete(objects, namespace=namespace)

    monkeypatch.setattr(cellplan, "fl_run", fl_run_with(netpol=False))
    monkeypatch.setattr(live.cluster, "delete", delete)
    row, events = runner.run_cell(live.backend, cell)

    assert row["success"] is False
    assert row["error"].startswith("proof of enforcement failed: "), row["error"]
    assert "rogue-to-server (expected blocked)" in row["error"]
    assert "client-to-client (expected blocked)" in row["error"]
    proofs = row_proofs(row)
    assert not proofs["rogue-to-server"]["passed"] and not proofs["client-to-client"]["passed"]
    assert "wire" not in proofs  # the rounds were never released, so nothing was captured
    assert events == b"" and row["metrics"]["rounds"] == []
    assert seen, "run_cell did not delete the namespace"
    server_events = [ln for ln in seen["log"] if ln.startswith("{")]
    assert any('"run_start"' in ln for ln in server_events), seen["log"][-5:]
    measured = ("round_start", "round_end", "client_update")
    assert not [ln for ln in server_events if any(f'"{k}"' in ln for k in measured)]
    assert seen["hold_dir_rc"] == 0 and seen["hold_file_rc"] == 1


@pytest.mark.slow
def test_wire_proof_fails_when_tls_is_left_off(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SEC2 (native) cell whose objects run without TLS, and whose pre-round proofs are
    (deliberately) judged as a plaintext run's, as if a broken control passed them: the
    capture of round 1 on the pod network (judged after the run by ``proofs.judge_wire``,
    expecting TLS records only) still sees the model's bytes in the clear, so the cell ends
    with "proof of enforcement failed: wire". (Without the second patch the pre-round mTLS
    proofs fail first: the runner proves what the cell claims, not what was rendered.)"""
    cell = tiny("SEC2", "native")
    monkeypatch.setattr(cellplan, "fl_run", fl_run_with(tls="none"))
    real_run_proofs = pf.run_proofs
    monkeypatch.setattr(pf, "run_proofs",
                        lambda cluster, plan: real_run_proofs(cluster, replace(plan, tls="none")))
    row, events = runner.run_cell(live.backend, cell)

    wire = row_proofs(row)["wire"]
    assert wire["expect"] == "tls-only" and wire["passed"] is False, wire
    assert "model bytes seen in clear" in wire["detail"], wire
    assert "not all flows TLS" in wire["detail"], wire
    assert row["error"].startswith("proof of enforcement failed: wire (expected tls-only)")
    assert row["success"] is False
    assert events_of(events, "round_end"), "the run itself should have gone through"
