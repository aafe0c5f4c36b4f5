"""mTLS mode ``mesh`` (Linkerd) on the kind/kube backends, checked offline (no Linkerd, no
cluster on these machines):

(a) a matrix file with ``mtls: [..., mesh]`` renders with ``ztfl render``; mesh cells carry the
    injection annotations, no harness TLS (Secrets, stunnel, proxy-init, ``--tls-*`` flags), and
    Linkerd's ``Server`` / ``MeshTLSAuthentication`` / ``AuthorizationPolicy`` wired together;
(b) every core object validates strictly against Kubernetes 1.30 and 1.37 (as in
    test_kube_manifests), and every Linkerd object against the openAPIV3Schema of Linkerd's own
    CRDs (``fixtures/linkerd-crds``, vendored from linkerd/linkerd2) with strict field validation;
(c) the NetworkPolicy truth tables: for the gRPC port and DNS a mesh cell equals the sidecar cell
    of the same SEC level, Linkerd's inbound port 4143 on the server is open to client-labelled
    pods only (SEC3), and the run namespace reaches Linkerd's control plane;
(d) the local backend refuses mesh cells with one line naming the field and the fix.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from test_kube_manifests import DNS, VERSIONS, load_folder, shape, tables, validate, view_of

from k8s_fixtures.netpol.model import ClusterView, ContainerPort, Namespace, Pod
from k8s_fixtures.netpol.truthtable import expected_table
from k8s_fixtures.tls import mesh
from pytest_ztfl import backends
from pytest_ztfl import matrix as mx

CRDS = Path(__file__).parent / "fixtures" / "linkerd-crds"
MATRIX = {
    "name": "mesh",
    "sec": ["SEC0", "SEC1", "SEC2", "SEC3"],
    "net": ["NET0", "NET2"],
    "data": ["iid"],
    "seeds": [0],
    "mtls": ["sidecar", "native", "mesh"],
    "workload": {"clients": 3, "rounds": 3},
}
LINKERD_DST = Pod("linkerd", "linkerd-destination", "10.244.9.9",
                  {"linkerd.io/control-plane-component": "destination"},
                  (ContainerPort("grpc", 8086, "TCP"), ContainerPort("policy-grpc", 8090, "TCP")))
# Linkerd's documented proxyProtocol values (linkerd.io 2.19 reference, authorization-policy):
PROXY_PROTOCOLS = ("unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[mx.Cell, Path]]:
    """``ztfl render --matrix <file with mtls: [sidecar, native, mesh]> --out DIR``."""
    from pytest_ztfl.cli import main

    tmp = tmp_path_factory.mktemp("render-mesh")
    spec = tmp / "mesh.yaml"
    spec.write_text(yaml.safe_dump(MATRIX))
    assert main(["render", "--matrix", str(spec), "--out", str(tmp / "out")]) == 0
    cells = {c.id: c for c in mx.load(str(spec)).cells()}
    return {f.name: (cells[f.name], f) for f in sorted((tmp / "out").iterdir())}


def _mesh(rendered: dict[str, tuple[mx.Cell, Path]]) -> dict[str, Path]:
    return {cid: f for cid, (c, f) in rendered.items() if c.mtls == "mesh"}


def _by(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


# ------------------------------------------------------------------------------ (a) objects


def test_the_matrix_renders_mesh_cells_next_to_the_other_modes(
        rendered: dict[str, tuple[mx.Cell, Path]]) -> None:
    assert len(rendered) == 2 * 2 + 2 * 3 * 2  # SEC0/1 x NET; SEC2/3 x 3 modes x NET
    assert sorted(_mesh(rendered)) == [
        "SEC2-NET0-iid-s0-mesh", "SEC2-NET2-iid-s0-mesh",
        "SEC3-NET0-iid-s0-mesh", "SEC3-NET2-iid-s0-mesh"]


def test_a_mesh_cell_is_linkerd_objects_and_no_harness_tls(
        rendered: dict[str, tuple[mx.Cell, Path]]) -> None:
    objs = load_folder(_mesh(rendered)["SEC3-NET2-iid-s0-mesh"])
    ns = objs[0]
    assert ns["kind"] == "Namespace"
    assert ns["metadata"]["annotations"] == {
        "linkerd.io/inject": "enabled",
        "config.linkerd.io/default-inbound-policy": "all-authenticated"}
    kinds = {o["kind"] for o in objs}
    assert not kinds & {"Secret", "ConfigMap"}, kinds
    pods = _by(objs, "Pod")
    for name, pod in pods.items():
        inject = pod["metadata"]["annotations"]["linkerd.io/inject"]
        containers = [c["name"] for c in pod["spec"]["containers"]]
        inits = [c["name"] for c in pod["spec"].get("initContainers", [])]
        assert "ztfl-proxy" not in containers and "ztfl-proxy-init" not in inits
        assert not any(a.startswith("--tls") or a == "--allowed-id"
                       for c in pod["spec"]["containers"] for a in c.get("args", [])), name
        # meshed: the FL pods and the stranger; un-meshed: the probes playing clients without
        # a certificate (or no client at all)
        meshed = name.startswith("fl-") or name == "ztfl-probe-identity"
        assert inject == ("enabled" if meshed else "disabled"), name
    assert pods["ztfl-probe-identity"]["spec"]["serviceAccountName"] == "ztfl-probe-other"
    assert set(_by(objs, "ServiceAccount")) == {"fl-server", "fl-client", "ztfl-probe-other"}

    server = _by(objs, "Server")["fl-server-grpc"]
    authn = _by(objs, "MeshTLSAuthentication")["fl-server-clients"]
    authz = _by(objs, "AuthorizationPolicy")["fl-server-grpc-clients"]
    sel = server["spec"]["podSelector"]["matchLabels"]
    assert [n for n, p in pods.items()
            if sel.items() <= p["metadata"]["labels"].items()] == ["fl-server"]
    # the Server's port must be a declared container port of the selected pod (Linkerd only
    # considers ports in the pod spec), and it is the app's own port: no TLS port of ours
    ports = {p["name"]: p["containerPort"] for c in pods["fl-server"]["spec"]["containers"]
             for p in c.get("ports", [])}
    assert ports == {server["spec"]["port"]: 50051}
    assert server["spec"]["proxyProtocol"] in PROXY_PROTOCOLS
    assert server["spec"]["accessPolicy"] == "deny"
    assert authn["spec"] == {"identityRefs": [{"kind": "ServiceAccount", "name": "fl-client"}]}
    assert all(pods[f"fl-client-{i}"]["spec"]["serviceAccountName"] == "fl-client"
               for i in range(3))
    assert authz["spec"]["targetRef"] == {
        "group": "policy.linkerd.io", "kind": "Server", "name": "fl-server-grpc"}
    assert authz["spec"]["requiredAuthenticationRefs"] == [
        {"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication",
         "name": "fl-server-clients"}]
    # apply order: policy objects before the pods they govern
    order = [o["kind"] for o in objs]
    assert order.index("AuthorizationPolicy") < order.index("Pod")


def test_sec2_mesh_has_no_network_policies(rendered: dict[str, tuple[mx.Cell, Path]]) -> None:
    objs = load_folder(_mesh(rendered)["SEC2-NET0-iid-s0-mesh"])
    assert "NetworkPolicy" not in {o["kind"] for o in objs}
    assert "Server" in {o["kind"] for o in objs}


# ------------------------------------------------------------------------- (b) validation


def test_core_objects_of_mesh_cells_validate_strictly(
        rendered: dict[str, tuple[mx.Cell, Path]]) -> None:
    shapes: dict[str, tuple[dict[str, Any], str]] = {}
    for cid, folder in _mesh(rendered).items():
        for p in sorted(folder.glob("*.yaml")):
            obj = yaml.safe_load(p.read_text())
            if obj["apiVersion"].startswith(f"{mesh.POLICY_GROUP}/"):
                continue
            s = shape(obj)
            shapes.setdefault(repr(s), (s, f"{cid}/{p.name}"))
    errors = [f"{where}: {err}" for v in VERSIONS for s, where in shapes.values()
              if (err := validate(s, v))]
    folder = _mesh(rendered)["SEC3-NET2-iid-s0-mesh"]
    errors += [f"{folder.name} verbatim ({v}): {err}" for v in VERSIONS
               for o in load_folder(folder)
               if not o["apiVersion"].startswith(mesh.POLICY_GROUP)
               if (err := validate(o, v))]
    assert errors == []


def _strict(schema: Any) -> Any:
    """A CRD schema as an API server with strict field validation applies it, in JSON Schema:
    unknown fields are errors (``additionalProperties: false``) unless the node says
    ``x-kubernetes-preserve-unknown-fields``; ``x-kubernetes-int-or-string`` is int or string."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator of the whole object (apiVersion, kind and metadata are
    the API server's, the rest is the CRD's schema)."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        schema = _strict(copy.deepcopy(doc["openAPIV3Schema"]))
        schema["properties"].update(
            apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
        out[(f"{doc['group']}/{doc['version']}", doc["kind"])] = jsonschema.Draft7Validator(schema)
    return out


def crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = crd_validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"{obj['apiVersion']} {obj['kind']}: no vendored CRD schema"]
    return [f"{obj['kind']} {obj['metadata']['name']}: "
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(obj)]


def test_linkerd_objects_validate_against_linkerds_crd_schemas(
        rendered: dict[str, tuple[mx.Cell, Path]]) -> None:
    from k8s_fixtures.manifests import check_metadata

    checked = 0
    errors: list[str] = []
    for folder in _mesh(rendered).values():
        for obj in load_folder(folder):
            if obj["apiVersion"].startswith(f"{mesh.POLICY_GROUP}/"):
                check_metadata(obj)
                errors += crd_errors(obj)
                checked += 1
    assert errors == [] and checked == 4 * 3


def test_the_crd_validation_can_fail() -> None:
    """Typos and schema violations of each kind are caught (the check is not vacuous)."""
    from k8s_fixtures.tls.mesh import policy_objects

    server, authn, authz = policy_objects("ns", {}, "fl-server", "grpc", ("fl-client",))
    bad = []
    s = copy.deepcopy(server)
    s["spec"]["podSelectr"] = s["spec"].pop("podSelector")  # typo: and oneOf then fails
    bad.append(s)
    s = copy.deepcopy(server)
    s["spec"]["port"] = ["grpc"]
    bad.append(s)
    a = copy.deepcopy(authn)
    a["spec"]["identities"] = ["fl-client.ns.serviceaccount.identity.linkerd.cluster.local"]
    bad.append(a)  # both identities and identityRefs: oneOf
    a = copy.deepcopy(authn)
    a["spec"]["identityRefs"] = []
    bad.append(a)  # minItems
    z = copy.deepcopy(authz)
    del z["spec"]["requiredAuthenticationRefs"]
    bad.append(z)
    z = copy.deepcopy(authz)
    z["spec"]["targetRef"]["kind"] = "Server!"
    bad.append(z)
    assert all(crd_errors(o) for o in bad), [crd_errors(o) for o in bad]
    assert not any(crd_errors(o) for o in (server, authn, authz))
    assert crd_errors({"apiVersion": "policy.linkerd.io/v1beta1", "kind": "Server",
                       "metadata": {"name": "x"}})  # a version we do not render


# -------------------------------------------------------------------------- (c) truth tables


def _view(objs: list[dict[str, Any]]) -> ClusterView:
    v = view_of(objs)
    return ClusterView((*v.namespaces, Namespace("linkerd")), (*v.pods, LINKERD_DST),
                       v.policies, v.node_ips)


def _restrict(t: dict[str, dict[tuple[str, str], bool]], pods: set[str]
              ) -> dict[str, dict[tuple[str, str], bool]]:
    return {k: {p: ok for p, ok in cells.items() if p[0] in pods and p[1] in pods}
            for k, cells in t.items()}


def test_mesh_network_policies_truth_tables(rendered: dict[str, tuple[mx.Cell, Path]]) -> None:
    checked = 0
    for cid, folder in _mesh(rendered).items():
        cell = rendered[cid][0]
        objs = load_folder(folder)
        view = _view(objs)
        sidecar = load_folder(rendered[cid.replace("-mesh", "-sidecar")][1])
        # gRPC port and DNS: exactly the sidecar cell's semantics, on the pods both have
        common = ({f"RUN/{o['metadata']['name']}" for o in objs if o["kind"] == "Pod"}
                  & {f"RUN/{o['metadata']['name']}" for o in sidecar if o["kind"] == "Pod"})
        common |= {DNS.key}
        assert _restrict(tables(view_of(objs)), common) == \
            _restrict(tables(view_of(sidecar)), common), cid

        run = view.namespaces[0].name
        keys = [p.key for p in view.pods]
        t = expected_table(view, keys, "TCP", mesh.INBOUND_PORT).cells  # type: ignore[arg-type]
        pods = {p.key: p for p in view.pods}
        server = f"{run}/fl-server"
        may_reach_4143 = {k for k in keys if t[(k, server)] and k != server}
        clients = {k for k, p in pods.items() if p.namespace == run
                   and p.labels.get("app.kubernetes.io/component") == "fl-client"}
        dst = LINKERD_DST.key
        to_linkerd = {k: expected_table(view, [k, dst], "TCP", 8086).cells[(k, dst)]
                      for k in keys if k.startswith(f"{run}/")}
        if cell.netpol:
            assert may_reach_4143 == clients, (cid, sorted(may_reach_4143))
            assert not t[(server, f"{run}/fl-client-0")]
            assert not t[(f"{run}/fl-client-0", f"{run}/fl-client-1")]
            assert not t[(f"{run}/ztfl-probe-rogue", server)]
        else:
            assert may_reach_4143 == set(keys) - {server}
        assert all(to_linkerd.values()), (cid, to_linkerd)  # every pod of the run reaches Linkerd
        checked += 1
    assert checked == 4


def test_the_control_plane_rule_is_what_opens_the_way_to_linkerd(
        rendered: dict[str, tuple[mx.Cell, Path]]) -> None:
    view = _view(load_folder(rendered["SEC3-NET0-iid-s0-sidecar"][1]))
    run = view.namespaces[0].name
    flow = (f"{run}/fl-client-0", LINKERD_DST.key)
    assert not expected_table(view, list(flow), "TCP", 8086).cells[flow]


# --------------------------------------------------------------------------- (d) local backend


def test_the_local_backend_refuses_mesh_cells_naming_the_field_and_the_fix() -> None:
    m = mx.from_dict(MATRIX, "mesh.yaml")
    mesh_cell = next(c for c in m.cells() if c.mtls == "mesh")
    assert backends.cell_unsupported("local", mesh_cell) == (
        "mtls=mesh: needs Linkerd on a Kubernetes cluster (--ztfl-backend=kind|kube); "
        "the local backend supports native|sidecar")
    for name in ("kind", "kube"):
        assert backends.cell_unsupported(name, mesh_cell) is None
    assert all(backends.cell_unsupported("local", c) is None
               for c in m.cells() if c.mtls != "mesh")
    line = backends.matrix_unsupported("local", m.cells())
    assert line is not None and "\n" not in line
    assert line.startswith("mtls=mesh: needs Linkerd") and "(cell SEC2-NET0-iid-s0-mesh)" in line
    assert backends.matrix_unsupported("auto", m.cells()) is None  # judged cell by cell
    assert backends.matrix_unsupported("kind", m.cells()) is None
    assert backends.matrix_unsupported("local", mx.load("full").cells()) is None


def test_run_cell_on_the_local_backend_refuses_a_mesh_cell_before_touching_the_cluster() -> None:
    from pytest_ztfl.backends import Backend, Platform
    from pytest_ztfl.runner import run_cell

    class LocalStandIn:
        """Records what the runner asks of a local cluster (nothing should be applied)."""

        backend_name, netpol_metadata, netem = "local", {}, None

        def __init__(self) -> None:
            self.calls: list[str] = []

        def apply(self, objs: Any) -> list[Any]:
            self.calls.append("apply")
            return []

        def delete(self, objs: Any = None, *, namespace: str | None = None) -> None:
            self.calls.append("delete")

        def pods(self, namespace: str, **kw: Any) -> list[Any]:
            self.calls.append("pods")
            return []

    cell = next(c for c in mx.from_dict(MATRIX, "m").cells() if c.mtls == "mesh")
    cluster = LocalStandIn()
    row, events = run_cell(
        Backend("local", cluster, Platform(python=("python",), data_dir="/d"), "local"), cell)
    assert row["error"] == f"cluster: {backends.MESH_NEEDS_KUBE}"
    assert "apply" not in cluster.calls and events == b""


def test_matrix_accepts_mesh_and_presets_keep_their_cells() -> None:
    assert "mesh" in mx.MTLS_MODES
    full = mx.load("full")
    assert full.mtls == ("sidecar", "native") and len(full.cells()) == 180
    one = mx.from_dict({**MATRIX, "mtls": ["mesh"]}, "m")
    assert {c.id for c in one.cells() if c.tls} >= {"SEC3-NET0-iid-s0"}  # one mode: no suffix
    assert all(c.mtls == "mesh" for c in one.cells() if c.tls)
    over = mx.override(mx.load("smoke"), mtls="mesh")
    assert over.mtls == ("mesh",)
    with pytest.raises(mx.MatrixError, match="expected one of sidecar, native, mesh"):
        mx.from_dict({**MATRIX, "mtls": ["istio"]}, "m")
