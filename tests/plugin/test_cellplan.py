"""One cell's set-up (pytest_ztfl.cellplan) as its three users see it, without a cluster:
``ztfl render`` writes a fault cell's objects as the fault rewrites them, ``ztfl probe`` expects
what the cell claims (not what was rendered), and the runner applies and waits for the plan."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cryptography import x509
from proof_expectations import EXPECTED

from k8s_fixtures import proofs as pf
from k8s_fixtures.cluster import ClusterError, ContainerStatus, PodStatus
from pytest_ztfl import arm, backends, cellplan, faults, prove, runner
from pytest_ztfl.backends import Backend, Platform
from pytest_ztfl.calibration import Calibrations
from pytest_ztfl.cli import main
from pytest_ztfl.matrix import Cell, MatrixError, Workload

Obj = dict[str, Any]
PLATFORM = Platform(python=("python",), data_dir="/data/mnist")


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
        sidecar = tuple(ContainerStatus(c, "running", True) for c in ("fl-client", "ztfl-proxy"))
        return [PodStatus(ns, pf.PEER, "Running", "10.0.0.9", True),
                PodStatus(ns, pf.OPEN, "Running", "10.0.0.8", True),
                PodStatus(ns, "fl-client-0", "Running", "10.0.0.5", True, sidecar)]

    def exec(self, ns: str, pod: str, argv: list[str], **_: Any) -> tuple[int, str, str]:
        return 0, '{"ok": true, "code": "OK"}', ""

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
    results = prove.prove(Backend("local", cluster, PLATFORM, "fake"), cell)
    assert {p.name: p.expect for p in results} == EXPECTED[sec]
    pods = _by(cluster.applied, "Pod")
    assert {pf.ROGUE, pf.PEER, pf.OPEN, "fl-server", "fl-client-0"} <= set(pods)
    if cell.netpol:  # the rogue's positive control is admitted by a policy of its own
        assert pf.OPEN_INGRESS in _by(cluster.applied, "NetworkPolicy")
        rogue = next(p for p in results if p.name == "rogue-to-server")
        assert not rogue.passed  # every probe of this fake connects: nothing is blocked
        assert rogue.detail.endswith(
            f"(positive controls: rogue -> {pf.OPEN} (admitted): connected; "
            "fl-client-0 -> fl-server:50051: connected)"), rogue.detail
    assert pf.NOCERT in pods  # with mTLS off too: its proof then expects "accepted"
    assert cluster.deleted == [cellplan.namespace_for(cell)]


def test_probe_proves_the_claim_even_when_the_rendering_drops_the_controls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A SEC3 (native) cell rendered with neither policies nor TLS: the probe still expects
    SEC3's proofs (so they would fail on a live cluster), as a measured cell does."""
    original = cellplan.fl_run

    def dropped(cell: Cell, platform: Platform, hold_rounds: bool = False) -> Any:
        return replace(original(cell, platform, hold_rounds), netpol=False, tls="none")

    monkeypatch.setattr(cellplan, "fl_run", dropped)
    cluster = FakeCluster()
    results = prove.prove(Backend("local", cluster, PLATFORM, "fake"),
                          prove.probe_cell("SEC3", "native"))
    assert {p.name: p.expect for p in results} == EXPECTED["SEC3"]
    probes = (pf.ROGUE_EGRESS, pf.OPEN_INGRESS)  # the proofs' own policies
    fl_policies = [n for n in _by(cluster.applied, "NetworkPolicy") if n not in probes]
    assert fl_policies == []  # the rendering really dropped them
    assert not [p for p in results if p.control == "mtls" and p.passed]


@pytest.mark.parametrize("sec", ["SEC0", "SEC1", "SEC2", "SEC3"])
def test_the_plan_is_the_cells_claim(sec: str) -> None:
    cell = Cell(sec, "NET0", "iid", 0, Workload(clients=2), mtls="native" if sec in (
        "SEC2", "SEC3") else None)
    cp = cellplan.plan_cell(cell, PLATFORM)
    assert cp.proofs.netpol == (sec in ("SEC1", "SEC3"))
    assert cp.proofs.tls == ("native" if cell.tls else "none")
    # SEC3 is the seed study's: + RBAC + Pod Security (rendered and proved)
    assert cp.proofs.restricted == cp.run.restricted == (sec == "SEC3")
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
    row, _ = runner.run_cell(Backend(backend, cluster, PLATFORM, "fake"),
                             Cell("SEC1", "NET0", "iid", 0, Workload(clients=2)))
    assert row["error"].startswith("proof of enforcement failed: "), row["error"]
    hint = "this cluster's CNI does not enforce NetworkPolicy (rogue-to-server: "
    if backend == "local":
        assert hint not in row["error"]
    else:
        assert hint in row["error"], row["error"]
        assert ("kind >= v0.24" in row["error"]) == (backend == "kind")


def test_a_kube_net_cell_records_the_init_containers_netem(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kind/kube have no local NET overlay: the client pods' tc init container shaped the
    links (their pods could not start otherwise), and the row says so instead of failing the
    cell with 'network profile ... was not applied'. (The rounds are not this test's.)"""

    def no_rounds(*_: Any, **__: Any) -> None:
        raise ClusterError("rounds not run by this test")

    monkeypatch.setattr(arm.Arm, "start", no_rounds)
    kube = replace(PLATFORM, netem_init=("python", "-m", "k8s_fixtures.netem.init"))
    cluster = FakeCluster()
    row, _ = runner.run_cell(Backend("kube", cluster, kube, "fake"),
                             Cell("SEC0", "NET2", "iid", 0, Workload(clients=2)))
    assert row["overlays"]["net"]["mechanism"] == "netem", row["overlays"]["net"]
    assert "rounds not run by this test" in row["error"], row["error"]
    inits = [i for o in cluster.applied if o["kind"] == "Pod"
             for i in o["spec"].get("initContainers", []) if i["name"] == "ztfl-netem-init"]
    assert inits and all(i["args"] == ["NET2"] for i in inits)


def test_the_local_backend_shapes_links_with_the_users_profiles_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--ztfl-net-profiles reaches the NET overlay that shapes the links (it was used for
    names and calibration only, so a user's NET9 failed every cell as 'unknown profile')."""
    from k8s_fixtures.local import backend as local_backend

    class NoKernelCluster:
        """LocalCluster's surface that backends._local uses, without namespaces."""

        mode, name, node_netns, bridge = "root", "fake", "fake-node", "br0"

        def __init__(self, **_: Any) -> None:
            self.overlays: list[Any] = []
            self.warnings: list[str] = []

        def detach(self) -> None:
            pass

        def start(self) -> None:
            pass

        def add_overlay(self, overlay: Any) -> None:
            self.overlays.append(overlay)

        def teardown(self) -> None:
            pass

    monkeypatch.setattr(local_backend, "LocalCluster", NoKernelCluster)
    path = tmp_path / "mine.yaml"
    path.write_text("profiles:\n  NET9:\n    description: mine\n"
                    "    up: {delay_ms: 7}\n    down: {delay_ms: 9}\n")
    mine = backends.create("local", data_dir="/d", net_profiles=path)
    assert mine.netem is not None and mine.netem.profiles["NET9"].down.delay_ms == 9
    default = backends.create("local", data_dir="/d")
    assert default.netem is not None
    assert "NET9" not in default.netem.profiles and "NET2" in default.netem.profiles


@pytest.mark.parametrize("keep", [True, False])
def test_keep_cluster_detaches_the_local_cluster_instead_of_leaving_it_stale(keep: bool) -> None:
    """--ztfl-keep-cluster: the session hands the local cluster over (detach: the record says
    so, only `ztfl cluster down` removes it); without it the cluster is torn down."""
    from pytest_ztfl.session import ZtflSession

    calls: list[str] = []
    lines: list[str] = []
    cluster = SimpleNamespace(name="ztfl-abc123", teardown=lambda: calls.append("teardown"))
    s = ZtflSession.__new__(ZtflSession)
    s._prefetch, s.rows = None, {}
    s.calibrations = Calibrations(Path("unused"), "local", {}, lines.append)  # none under way
    s._backend = Backend("local", cluster, PLATFORM, "local",  # type: ignore[arg-type]
                         detach=lambda: calls.append("detach"))
    s.settings = SimpleNamespace(report=None, keep_cluster=keep)  # type: ignore[assignment]
    s.progress = lines.append
    s.close()
    assert calls == (["detach"] if keep else ["teardown"])
    assert any("ztfl cluster down ztfl-abc123" in x for x in lines) == keep


def test_a_dirichlet_cell_with_a_dotted_alpha_gets_a_valid_namespace() -> None:
    """Cell ids may carry ``dir0.1``; namespace names are DNS-1123 labels (no dots)."""
    import re

    cell = Cell("SEC0", "NET0", "dirichlet-0.1", 0, Workload(clients=2))
    assert "dir0.1" in cell.id
    ns = cellplan.namespace_for(cell)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns), ns
    objs = cellplan.plan_cell(cell, PLATFORM).objects()
    assert {o["metadata"].get("namespace", ns) for o in objs} == {ns}


def test_a_bad_harness_certificate_stops_the_cell_before_anything_is_applied(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's Secrets are validated before apply (issue 4's bad certificates); the
    probes' other-CA Secret and a fault's expired one are bad on purpose and pass through."""
    for mtls, fault in (("native", None), ("sidecar", None), ("native", "mtls-expired")):
        cell = Cell("SEC3", "NET0", "iid", 0, Workload(clients=3), mtls=mtls, fault=fault)
        runner.deploy_and_prove(FakeCluster(), cellplan.plan_cell(cell, PLATFORM))
    cp = cellplan.plan_cell(Cell("SEC3", "NET0", "iid", 0, Workload(clients=2), mtls="native"),
                            PLATFORM)
    objs = cp.workload_objects()
    secret = next(o for o in objs if o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls")
    foreign = next(o for o in cp.probes if o["kind"] == "Secret")  # issued by the other CA
    secret["data"]["tls.crt"] = foreign["data"]["tls.crt"]
    monkeypatch.setattr(faults, "render", lambda *_: objs)
    cluster = FakeCluster()
    with pytest.raises(ClusterError, match="harness certificate: .*" + secret["metadata"]["name"]):
        runner.deploy_and_prove(cluster, cp)
    assert cluster.applied == []


def test_rendered_yaml_has_no_anchors_and_reads_back_as_the_objects(tmp_path: Path) -> None:
    """A list shared by two containers (their volume mounts) is written out twice, not as a
    YAML anchor and alias, which kubectl accepts but people diff badly."""
    from pytest_ztfl.matrix import load
    from pytest_ztfl.render import cell_objects, render_matrix

    m = load("quick")
    folders = render_matrix(m, tmp_path, "ghcr.io/ztfl/fl-app:0.1.0")
    texts = {p: p.read_text() for f in folders for p in sorted(f.glob("*.yaml"))}
    assert texts and not [p for p, t in texts.items() if "&id0" in t or "*id0" in t]
    cell = next(c for c in m.cells() if c.sec == "SEC1" and c.net == "NET2")  # no fresh keys
    back = [yaml.safe_load(t) for p, t in texts.items() if p.parent.name == cell.id]
    assert back == cell_objects(cell, "ghcr.io/ztfl/fl-app:0.1.0")


@pytest.mark.parametrize("sec", ["SEC2", "SEC3"])
def test_a_cell_asking_for_mtls_without_a_mode_is_refused_in_one_line(sec: str) -> None:
    """Before, such a cell rendered no proxy and its proofs failed with "no container
    'ztfl-proxy'"; now planning it names the cell, the field and the modes."""
    cell = Cell(sec, "NET0", "iid", 0, Workload(clients=2))
    with pytest.raises(MatrixError) as e:
        cellplan.plan_cell(cell, PLATFORM)
    assert str(e.value) == (f"cell {sec}-NET0-iid-s0: mtls=None: {sec} needs an mTLS mode, "
                            "one of sidecar, native, mesh")
    cellplan.plan_cell(replace(cell, mtls="sidecar"), PLATFORM)  # a mode: planned
