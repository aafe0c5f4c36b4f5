"""One cell's set-up (pytest_ztfl.cellplan) as its three users see it, without a cluster:
``ztfl render`` writes a fault cell's objects as the fault rewrites them, ``ztfl probe`` expects
what the cell claims (not what was rendered), and the runner applies and waits for the plan."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from k8s_fixtures import proofs as pf
from k8s_fixtures.cluster import ClusterError, PodStatus
from pytest_ztfl import cellplan, faults, prove, runner
from pytest_ztfl.backends import Platform
from pytest_ztfl.cli import main
from pytest_ztfl.matrix import Cell, Workload

Obj = dict[str, Any]
PLATFORM = Platform(python=("python",), data_dir="/data/mnist")
OPEN = {"dns": "resolves", "rogue-to-server": "open", "client-to-client": "open"}
BLOCKED = {"dns": "resolves", "rogue-to-server": "blocked", "client-to-client": "blocked"}
REFUSED = {"no-cert-refused": "refused", "other-ca-refused": "refused"}
EXPECTED = {
    "SEC0": OPEN,
    "SEC1": BLOCKED,
    "SEC2": {**OPEN, **REFUSED},
    "SEC3": {**BLOCKED, **REFUSED},
}


class FakeCluster:
    """Records what is applied; every probe connects; the server side cannot be read."""

    def __init__(self) -> None:
        self.applied: list[Obj] = []
        self.waited: list[str] | None = None
        self.deleted: list[str | None] = []
        self.plans: list[pf.ProofPlan] = []

    def apply(self, objs: list[Obj]) -> None:
        self.applied.extend(objs)

    def wait_ready(self, ns: str, *, names: Any = None, timeout: float = 60.0) -> None:
        self.waited = None if names is None else list(names)

    def pods(self, ns: str) -> list[Any]:
        return [PodStatus(ns, pf.PEER, "Running", "10.0.0.9", True)]

    def exec(self, ns: str, pod: str, argv: list[str], **_: Any) -> tuple[int, str, str]:
        return 0, '{"ok": true}', ""

    def logs(self, ns: str, pod: str, **_: Any) -> list[str]:
        raise ClusterError("no server log in this fake")

    def delete(self, objects: Any = None, *, namespace: str | None = None) -> None:
        self.deleted.append(namespace)


def _by(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def _container(pod: Obj, name: str) -> Obj:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """``ztfl render --matrix=<a matrix with a fault axis>``: every cell folder's objects."""
    tmp = tmp_path_factory.mktemp("render-faults")
    spec = tmp / "faults.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "faults",
        "sec": ["SEC0", "SEC1", "SEC2"],
        "net": ["NET0"],
        "data": ["iid"],
        "seeds": [0],
        "mtls": ["native"],
        "workload": {"clients": 3, "rounds": 2},
        "faults": ["none", "netpol-no-dns", "mtls-expired", "client-oom"],
    }))
    out = tmp / "out"
    assert main(["render", "--matrix", str(spec), "--out", str(out)]) == 0
    return {
        f.name: [yaml.safe_load(p.read_text()) for p in sorted(f.glob("*.yaml"))]
        for f in sorted(Path(out).iterdir())
    }


def test_render_crosses_the_fault_axis(rendered: dict[str, list[Obj]]) -> None:
    assert sorted(rendered) == sorted([
        "SEC0-NET0-iid-s0", "SEC1-NET0-iid-s0", "SEC2-NET0-iid-s0",
        "SEC0-NET0-iid-s0-client-oom", "SEC1-NET0-iid-s0-client-oom",
        "SEC2-NET0-iid-s0-client-oom", "SEC1-NET0-iid-s0-netpol-no-dns",
        "SEC2-NET0-iid-s0-mtls-expired",
    ])


def test_render_writes_the_policy_a_no_dns_fault_rewrote(
        rendered: dict[str, list[Obj]]) -> None:
    """netpol-no-dns: client 1 is labelled the target and left out of allow-dns, and the
    server's join timeout is the fault's short one (its ``prepare``); the unfaulted SEC1 cell
    keeps the policy whole."""
    not_target = {"key": faults.FAULT_LABEL, "operator": "DoesNotExist"}
    objs = rendered["SEC1-NET0-iid-s0-netpol-no-dns"]
    dns = _by(objs, "NetworkPolicy")["ztfl-allow-dns"]["spec"]["podSelector"]
    assert not_target in dns["matchExpressions"]
    pods = _by(objs, "Pod")
    assert pods["fl-client-1"]["metadata"]["labels"][faults.FAULT_LABEL] == "target"
    assert faults.FAULT_LABEL not in pods["fl-client-0"]["metadata"]["labels"]
    server = _container(pods["fl-server"], "fl-server")
    assert _flag(server["args"], "--join-timeout") == f"{faults.JOIN_TIMEOUT:g}"

    plain = rendered["SEC1-NET0-iid-s0"]
    assert "matchExpressions" not in _by(plain, "NetworkPolicy")["ztfl-allow-dns"]["spec"][
        "podSelector"]
    assert _flag(_container(_by(plain, "Pod")["fl-server"], "fl-server")["args"],
                 "--join-timeout") == f"{cellplan.READY_TIMEOUT}"


def test_render_writes_the_expired_certificate_the_client_presents(
        rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["SEC2-NET0-iid-s0-mtls-expired"]
    secrets = _by(objs, "Secret")
    vols = _by(objs, "Pod")["fl-client-1"]["spec"]["volumes"]
    name = next(v["secret"]["secretName"] for v in vols if v["name"] == "tls")
    assert name == "fl-client-1-fault-mtls" and name in secrets
    cert = x509.load_pem_x509_certificate(base64.b64decode(secrets[name]["data"]["tls.crt"]))
    assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    # the other clients keep the valid, shared certificate
    vols0 = _by(objs, "Pod")["fl-client-0"]["spec"]["volumes"]
    assert next(v["secret"]["secretName"] for v in vols0 if v["name"] == "tls") != name


def test_render_writes_the_oom_memory_limit(rendered: dict[str, list[Obj]]) -> None:
    pods = _by(rendered["SEC0-NET0-iid-s0-client-oom"], "Pod")
    limits = _container(pods["fl-client-1"], "fl-client").get("resources", {}).get("limits", {})
    assert limits.get("memory") == faults.OOM_LIMIT
    other = _container(pods["fl-client-0"], "fl-client").get("resources", {}).get("limits", {})
    assert other.get("memory") != faults.OOM_LIMIT


@pytest.mark.parametrize(
    ("sec", "mtls"),
    [("SEC0", None), ("SEC1", None), ("SEC2", "native"), ("SEC2", "sidecar"),
     ("SEC3", "native"), ("SEC3", "sidecar")],
)
def test_probe_expects_what_the_cell_claims(sec: str, mtls: str | None) -> None:
    """``ztfl probe --sec``: SEC1/SEC3 expect both netpol probes blocked, SEC0/SEC2 open;
    SEC2/SEC3 add the refusal proofs; the probe pods (with the other CA's leaf for TLS) are
    applied next to the FL pods, and the namespace is deleted."""
    cell = prove.probe_cell(sec, mtls or "sidecar")
    cluster = FakeCluster()
    results = prove.prove(cluster, cell, PLATFORM)
    assert {p.name: p.expect for p in results} == EXPECTED[sec]
    pods = _by(cluster.applied, "Pod")
    assert {pf.ROGUE, pf.PEER, "fl-server", "fl-client-0"} <= set(pods)
    assert (pf.NOCERT in pods) == cell.tls
    assert cluster.deleted == [cellplan.namespace_for(cell)]


def test_probe_proves_the_claim_even_when_the_rendering_drops_the_controls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A SEC3 (native) cell rendered with neither policies nor TLS: the probe still expects
    SEC3's proofs (so they would fail on a live cluster), as a measured cell does."""
    original = cellplan.fl_run

    def dropped(cell: Cell, platform: Platform) -> Any:
        return replace(original(cell, platform), netpol=False, tls="none")

    monkeypatch.setattr(cellplan, "fl_run", dropped)
    cluster = FakeCluster()
    results = prove.prove(cluster, prove.probe_cell("SEC3", "native"), PLATFORM)
    assert {p.name: p.expect for p in results} == EXPECTED["SEC3"]
    fl_policies = [n for n in _by(cluster.applied, "NetworkPolicy") if n != pf.ROGUE_EGRESS]
    assert fl_policies == []  # the rendering really dropped them
    assert not [p for p in results if p.control == "mtls" and p.passed]


@pytest.mark.parametrize("sec", ["SEC0", "SEC1", "SEC2", "SEC3"])
def test_the_plan_is_the_cells_claim(sec: str) -> None:
    cell = Cell(sec, "NET0", "iid", 0, Workload(clients=2), mtls="native" if sec in (
        "SEC2", "SEC3") else None)
    cp = cellplan.plan_cell(cell, PLATFORM)
    assert cp.proofs.netpol == (sec in ("SEC1", "SEC3"))
    assert cp.proofs.tls == ("native" if cell.tls else "none")
    assert cp.proofs.namespace == cp.run.namespace == cellplan.namespace_for(cell)
    assert (cp.ca is not None, cp.other_ca is not None) == (cell.tls, cell.tls)
    if cp.ca is not None and cp.other_ca is not None:
        assert cp.ca.cert.subject != cp.other_ca.cert.subject


def test_the_runner_applies_the_fault_plan_and_skips_its_unready_pod() -> None:
    """``runner.deploy_and_prove``: the OOM cell's objects carry the fault's memory limit and
    the runner does not wait for the pod the fault kills on purpose."""
    cell = Cell("SEC0", "NET0", "iid", 0, Workload(clients=3), fault="client-oom")
    cluster = FakeCluster()
    runner.deploy_and_prove(cluster, cellplan.plan_cell(cell, PLATFORM))
    pods = _by(cluster.applied, "Pod")
    limits = _container(pods["fl-client-1"], "fl-client")["resources"]["limits"]
    assert limits["memory"] == faults.OOM_LIMIT
    assert cluster.waited is not None
    assert "fl-client-1" not in cluster.waited and "fl-client-0" in cluster.waited
    assert pf.ROGUE in cluster.waited  # the probe pods are waited for


@pytest.mark.parametrize("backend", ["kind", "kube", "local"])
def test_a_netpol_proof_failing_on_a_real_cluster_names_the_cni(backend: str) -> None:
    """Issue 7's bad input: on kind/kube a NetworkPolicy that blocks nothing is most likely a
    CNI that does not enforce policies; the cell's error says so and names the fix. The local
    backend enforces policies itself: no such hint there."""
    cluster = FakeCluster()  # every probe connects: the policies block nothing
    cluster.backend_name = backend  # type: ignore[attr-defined]
    row, _ = runner.run_cell(cluster, Cell("SEC1", "NET0", "iid", 0, Workload(clients=2)),
                             PLATFORM, "fake")
    assert row["error"].startswith("proof of enforcement failed: "), row["error"]
    hint = "this cluster's CNI does not enforce NetworkPolicy (rogue-to-server: "
    if backend == "local":
        assert hint not in row["error"]
    else:
        assert hint in row["error"], row["error"]
        assert ("kind >= v0.24" in row["error"]) == (backend == "kind")
