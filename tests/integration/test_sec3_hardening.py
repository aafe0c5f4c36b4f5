"""SEC3's hardening (the seed study's RBAC + Pod Security) on the real local backend.

A SEC3 cell's FL pods are proved, by probes exec'd in the running containers, to hold no
token, run as a non-root uid, have a read-only root, no capabilities and a seccomp filter, and
its namespace's admission refuses a privileged pod; each of these proofs FAILS when the
deployment leaves its control off while the cell still claims SEC3 (all of it, and one
control at a time where Pod Security itself does not require it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from integration_support import Live, by_name, explain
from proof_expectations import EXPECTED, HARDENED

from k8s_fixtures import proofs as pf
from k8s_fixtures.cluster import Obj
from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.proofs.hardening import posture
from k8s_fixtures.tls.sidecar import PROXY_UID
from pytest_ztfl import cellplan, prove, runner
from pytest_ztfl.matrix import Cell, Workload

pytestmark = pytest.mark.privileged

TINY = Workload(clients=1, rounds=1, min_participants=1, eval_every=1)


def tiny(mtls: str) -> Cell:
    return Cell(sec="SEC3", net="NET0", data="iid", seed=0, workload=TINY, mtls=mtls)


@pytest.mark.parametrize("mtls", ["sidecar", "native"])
def test_sec3_proves_its_hardening(live: Live, mtls: str) -> None:
    results = prove.prove(live.backend, prove.probe_cell("SEC3", mtls))
    assert {p.name: p.expect for p in results} == EXPECTED["SEC3"], explain(results)
    assert all(p.passed for p in results), explain(results)
    got = by_name(results)
    probed = ["fl-server/fl-server", "fl-client-0/fl-client"]
    if mtls == "sidecar":
        probed += ["fl-server/ztfl-proxy", "fl-client-0/ztfl-proxy"]
    for name in HARDENED:
        if name != "psa-restricted":
            assert all(where in got[name].detail for where in probed), got[name].detail
    assert 'violates PodSecurity "restricted:latest"' in got["psa-restricted"].detail


def test_inside_a_sec3_client_the_app_can_do_none_of_it(live: Live) -> None:
    """Seen from the running client as its own user: uid 10001 (the proxy 2102), no nft (no
    NET_ADMIN), no write to /etc, no new namespace (the seccomp filter), and still the
    sidecar redirect, installed by the node, sends its connects to the proxy."""
    seen: dict[str, Any] = {}

    def look(plan: pf.ProofPlan) -> None:
        c = live.cluster
        seen["id"] = c.exec(plan.namespace, "fl-client-0", ["id", "-u"], container="fl-client")
        seen["proxy"] = c.exec(plan.namespace, "fl-client-0", ["id", "-u"],
                               container="ztfl-proxy")
        seen["nft"] = c.exec(plan.namespace, "fl-client-0", ["nft", "list", "ruleset"],
                             container="fl-client")
        seen["etc"] = c.exec(plan.namespace, "fl-client-0", ["touch", "/etc/ztfl-probe"],
                             container="fl-client")
        seen["unshare"] = c.exec(plan.namespace, "fl-client-0", ["unshare", "-U", "true"],
                                 container="fl-client")
        netns = c.pod_info(plan.namespace, "fl-client-0").netns
        seen["table"] = c.run(["ip", "netns", "exec", netns, "nft", "list", "table", "inet",
                               "ztfl_sidecar"])

    results = live.prove_left_off(tiny("sidecar"), then=look)
    assert all(p.passed for p in results), explain(results)
    assert seen["id"].out.strip() == "10001" and seen["proxy"].out.strip() == str(
        PROXY_UID), seen
    assert seen["nft"].rc != 0 and "Operation not permitted" in seen["nft"].err, seen["nft"]
    assert seen["etc"].rc != 0 and "Read-only file system" in seen["etc"].err, seen["etc"]
    assert seen["unshare"].rc != 0 and "Operation not permitted" in seen["unshare"].err, (
        seen["unshare"])
    assert f"meta skuid {PROXY_UID} return" in seen["table"], seen["table"]


def _parent_cmdline(pid: int) -> str:
    ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_proofs_judge_the_forked_workload_process_itself(live: Live) -> None:
    """A SEC3 client's FL process is forked by the cluster's zygote (its parent), not exec'd
    by the launcher: the posture probe the proofs run lists it among the container's
    processes, and the machine's own view of it shows the container's user and filter."""
    seen: dict[str, Any] = {}

    def look(plan: pf.ProofPlan) -> None:
        c = live.cluster
        assert isinstance(c, LocalCluster)
        seen["pids"] = c.container_pids(plan.namespace, "fl-client-0", "fl-client")
        seen["posture"] = posture(c, plan, "fl-client-0", "fl-client")
        seen["parents"] = {p: _parent_cmdline(p) for p in seen["pids"]}
        seen["status"] = {p: Path(f"/proc/{p}/status").read_text() for p in seen["pids"]}

    results = live.prove_left_off(tiny("sidecar"), then=look)
    assert all(p.passed for p in results), explain(results)
    forked = [p for p, cmd in seen["parents"].items() if "k8s_fixtures.local.zygote" in cmd]
    assert forked, seen["parents"]
    probed = {p["pid"] for p in seen["posture"]["processes"]}
    assert set(seen["pids"]) <= probed, (seen["pids"], probed)
    for pid in forked:
        assert "Uid:\t10001\t10001\t10001\t10001" in seen["status"][pid]
        assert "Seccomp:\t2" in seen["status"][pid] and "NoNewPrivs:\t1" in seen["status"][pid]


def test_sec3_rendered_without_hardening_fails_every_hardening_proof(live: Live) -> None:
    """The objects of SEC3 without the hardening (restricted=False: the namespace is not
    restricted, pods run as root with a token) proved as SEC3: every hardening proof FAILS,
    naming what it found; the NetworkPolicy and mTLS proofs, whose controls are on, pass."""
    results = live.prove_left_off(tiny("sidecar"), restricted=False)
    got = by_name(results)
    assert {p.name: p.expect for p in results} == EXPECTED["SEC3"], explain(results)
    for name in HARDENED:
        assert not got[name].passed, explain(results)
    assert "token mounted at /var/run/secrets/kubernetes.io/serviceaccount/token" in (
        got["no-token"].detail)
    assert "uid [0, 0, 0, 0]" in got["non-root"].detail, got["non-root"].detail
    assert "a file could be created in /" in got["read-only-root"].detail
    assert "cap_eff=" in got["no-capabilities"].detail
    assert "seccomp mode 0" in got["seccomp"].detail
    assert "was admitted" in got["psa-restricted"].detail
    assert all(got[n].passed for n in EXPECTED["SEC3"] if n not in HARDENED), explain(results)


def _fl_pods(change: Callable[[Obj], None]) -> Callable[..., list[Obj]]:
    original = cellplan.CellPlan.workload_objects

    def objects(self: cellplan.CellPlan) -> list[Obj]:
        objs = original(self)
        for o in objs:
            if o["kind"] == "Pod":
                change(o)
        return objs

    return objects


def _writable_root(pod: Obj) -> None:
    for c in pod["spec"]["containers"]:
        c["securityContext"]["readOnlyRootFilesystem"] = False


def _token(pod: Obj) -> None:
    pod["spec"]["automountServiceAccountToken"] = True


@pytest.mark.parametrize(("change", "proof", "why"), [
    (_writable_root, "read-only-root", "creating a file in / failed with EACCES, not EROFS"),
    (_token, "no-token", "token mounted at"),
])
def test_one_control_left_off_fails_its_proof_alone(
        live: Live, monkeypatch: pytest.MonkeyPatch, change: Callable[[Obj], None],
        proof: str, why: str) -> None:
    """Pod Security ``restricted`` admits a writable root and a mounted token: a SEC3 rendering
    with just that changed is admitted, and only the proof of that control fails."""
    monkeypatch.setattr(cellplan.CellPlan, "workload_objects", _fl_pods(change))
    cp = cellplan.plan_cell(tiny("native"), live.platform)
    try:
        results = runner.deploy_and_prove(live.cluster, cp)
    finally:
        live.cluster.delete(namespace=cp.run.namespace)
    got = by_name(results)
    assert not got[proof].passed and why in got[proof].detail, explain(results)
    assert all(p.passed for p in results if p.name != proof), explain(results)
